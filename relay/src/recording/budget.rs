//! The recording budget: how many data bytes a session's splices may have handed to its
//! recorder (and so may have forwarded) that are not yet in the recording's file.
//!
//! A splice takes bytes from the budget before it hands a batch to the recorder, and
//! forwards the batch only after that; the recorder gives them back once the sink's
//! `write()` has accepted those bytes, in whole chunks (see `Task::write_out`). So at any
//! moment, what crossed the relay but is not yet in the file is at most [`HELD`], whatever
//! the disk does. A full disk fails at `write()`, so this bounds what it can lose; a crash
//! also loses what was written but not yet synced (`SYNC_EVERY`), which this does not cover.
//!
//! It is a byte-counting semaphore and nothing more: it does not write, and it does not
//! decide what a failure means (closing it only wakes the waiters with an error).

use std::sync::Arc;
use tokio::sync::Semaphore;

/// Data bytes accepted but not yet written that a session may hold, across all its
/// channels and both directions.
pub const HELD: usize = 512 * 1024;
/// Held bytes at which the recorder writes them out. Half the budget, so that splices keep
/// moving into the other half while a write is under way.
pub const WRITE_OUT_AT: usize = HELD / 2;

/// The bytes of one session's budget. Cloning shares it.
#[derive(Clone, Debug)]
pub struct Budget(Arc<Semaphore>);

/// The budget was closed: the recorder stopped.
#[derive(Debug)]
pub struct Closed;

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

impl Budget {
    pub fn new() -> Self {
        Self(Arc::new(Semaphore::new(HELD)))
    }

    /// Takes room for a hand-off of `len` data bytes, waiting while the recorder is behind.
    /// Returns what was taken, for the recorder to give back: `len`, but at most
    /// [`WRITE_OUT_AT`], so that one hand-off always fits beside what the recorder holds
    /// below its write-out mark. A splice batch is at most 32 QUIC packets of at most
    /// 6,500 B (`assist_net`'s largest UDP payload), 203 KiB, so the cap never applies to
    /// it and [`HELD`] is exact.
    pub async fn take(&self, len: usize) -> Result<u32, Closed> {
        let n = len.min(WRITE_OUT_AT) as u32;
        if n == 0 {
            return Ok(0);
        }
        let permit = self.0.acquire_many(n).await.map_err(|_| Closed)?;
        // The recorder gives the bytes back (`give_back`) once they are written, not when
        // this permit would drop.
        permit.forget();
        Ok(n)
    }

    /// Returns bytes that are now in the file.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            self.0.add_permits(n);
        }
    }

    /// Wakes every waiter with [`Closed`], and refuses every later `take`.
    pub fn close(&self) {
        self.0.close();
    }

    /// Bytes that can be taken now without waiting.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_waits_until_bytes_are_given_back() {
        let b = Budget::new();
        assert_eq!(b.take(WRITE_OUT_AT).await.unwrap() as usize, WRITE_OUT_AT);
        assert_eq!(b.take(HELD).await.unwrap() as usize, WRITE_OUT_AT, "one hand-off takes at most half");
        assert_eq!(b.available(), 0);
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.take(10).await.map(|n| n as usize) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing is taken beyond the budget");
        b.give_back(10);
        assert_eq!(waiting.await.unwrap().unwrap(), 10);
        let closed = tokio::spawn({
            let b = b.clone();
            async move { b.take(1).await }
        });
        tokio::task::yield_now().await;
        b.close();
        assert!(closed.await.unwrap().is_err(), "closing wakes the waiter with an error");
    }
}
