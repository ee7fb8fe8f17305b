//! Coalesced increments: while one increment of the shared counter is in flight, the requests
//! that arrive wait together, and the next round trip is one `INCRBY k` whose range of values
//! is handed out to those k requests. No timer: a lone request goes out at once, so batching
//! costs nothing when there is nothing to batch, and under load one round trip serves many
//! requests.
//!
//! Values stay unique: each batch's range comes from one atomic `INCRBY`. A request cancelled
//! (client gone) after it joined a batch leaves its value unused — a gap in the sequence, never
//! a duplicate. An error fails every request of its batch; the next batch tries again.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use super::{Result, StoreError};

/// What the coalescer needs of the store: add `k` to the counter at once and return the new
/// value (`INCRBY key k`).
pub(crate) trait AddBy: Send + Sync + 'static {
    fn add_by(&self, k: u64) -> impl Future<Output = Result<u64>> + Send;
}

/// Increments of one counter, batched while one is in flight.
pub(crate) struct Coalescer<B> {
    /// The store, also used directly for its other operations.
    pub(crate) backend: B,
    /// Requests waiting for the next batch; `None` while no task is sending batches. Nothing
    /// panics while holding the lock, so a poisoned one is still consistent.
    waiting: Mutex<Option<Vec<oneshot::Sender<Result<u64>>>>>,
}

impl<B: AddBy> Coalescer<B> {
    pub(crate) fn new(backend: B) -> Arc<Self> {
        Arc::new(Self {
            backend,
            waiting: Mutex::default(),
        })
    }

    /// One increment: joins the next batch (starting the task that sends batches if none runs)
    /// and returns this request's value.
    pub(crate) async fn increment(self: &Arc<Self>) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            let start = waiting.is_none();
            waiting.get_or_insert_default().push(tx);
            start
        };
        if start {
            // A task of its own: the batch must complete even if the request that started it
            // is cancelled.
            tokio::spawn(self.clone().send_batches());
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the increment was abandoned (the service is stopping)".into(),
            ))
        })
    }

    /// Sends one `INCRBY` per batch until no request is waiting.
    async fn send_batches(self: Arc<Self>) {
        loop {
            let batch = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let batch = waiting.take().unwrap_or_default();
                if batch.is_empty() {
                    return;
                }
                *waiting = Some(Vec::new());
                batch
            };
            let k = batch.len() as u64;
            // The batch's values end at the one the store returned.
            let first = self.backend.add_by(k).await.and_then(|last| {
                (last >= k).then(|| last - k + 1).ok_or_else(|| {
                    StoreError::Corrupt(format!("INCRBY {k} returned {last}, below the batch size"))
                })
            });
            for (tx, i) in batch.into_iter().zip(0..) {
                // A request that is gone leaves its value unused: a gap.
                let _ = tx.send(first.clone().map(|first| first + i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A counter that takes a varying time to answer, and records every batch size.
    #[derive(Default)]
    struct Fake {
        value: AtomicU64,
        calls: AtomicUsize,
        batches: Mutex<Vec<u64>>,
        fail_next: std::sync::atomic::AtomicBool,
    }

    impl AddBy for Arc<Fake> {
        fn add_by(&self, k: u64) -> impl Future<Output = Result<u64>> + Send {
            let this = self.clone();
            async move {
                let call = this.calls.fetch_add(1, Ordering::SeqCst) as u64;
                // Jitter (0–3 ms, varying by call) so arrivals interleave differently each time.
                tokio::time::sleep(Duration::from_micros((call * 7919) % 3000)).await;
                this.batches.lock().unwrap().push(k);
                if this.fail_next.swap(false, Ordering::SeqCst) {
                    return Err(StoreError::Unavailable("injected".into()));
                }
                Ok(this.value.fetch_add(k, Ordering::SeqCst) + k)
            }
        }
    }

    fn coalescer() -> (Arc<Coalescer<Arc<Fake>>>, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        (Coalescer::new(fake.clone()), fake)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_get_every_value_once_in_fewer_round_trips() {
        let (c, fake) = coalescer();
        let all =
            super::super::tests::increments_from(c, 64, 50, |c| async move { c.increment().await })
                .await;
        assert!(
            all.iter().copied().eq(1..=3200),
            "values are not exactly 1..=3200"
        );
        let calls = fake.calls.load(Ordering::SeqCst);
        assert!(calls < 3200 / 4, "{calls} round trips for 3200 increments");
        let batched: u64 = fake.batches.lock().unwrap().iter().sum();
        assert_eq!(batched, 3200);
    }

    #[tokio::test]
    async fn a_lone_request_is_one_round_trip_of_one() {
        let (c, fake) = coalescer();
        for expected in 1..=5 {
            assert_eq!(c.increment().await.unwrap(), expected);
        }
        assert_eq!(*fake.batches.lock().unwrap(), vec![1; 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_fails_its_batch_only_and_the_next_batch_goes_on_where_it_left_off() {
        let (c, fake) = coalescer();
        assert_eq!(c.increment().await.unwrap(), 1);
        fake.fail_next.store(true, Ordering::SeqCst);
        assert!(c.increment().await.is_err());
        assert_eq!(c.increment().await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cancelled_requests_leave_gaps_never_duplicates() {
        let (c, fake) = coalescer();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.increment().await.unwrap() })
            })
            .collect();
        // Cancel every third request, wherever it is.
        let mut kept = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if i % 3 == 0 {
                t.abort();
            } else {
                kept.push(t);
            }
        }
        let mut values = Vec::new();
        for t in kept {
            if let Ok(v) = t.await {
                values.push(v);
            }
        }
        let count = values.len();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), count, "a value was handed out twice");
        let total = fake.value.load(Ordering::SeqCst);
        assert!(values.iter().all(|v| (1..=total).contains(v)));
    }

    /// A store whose counter went backwards: it returns less than the batch size.
    struct Behind;

    impl AddBy for Behind {
        async fn add_by(&self, k: u64) -> Result<u64> {
            Ok(k - 1)
        }
    }

    #[tokio::test]
    async fn a_batch_ends_at_the_value_redis_returned_and_a_value_below_its_size_is_corrupt() {
        let (c, fake) = coalescer();
        fake.value.store(41, Ordering::SeqCst);
        assert_eq!(c.increment().await.unwrap(), 42);
        let err = Coalescer::new(Behind).increment().await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }
}
