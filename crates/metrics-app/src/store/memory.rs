//! The in-process counter: one atomic, one sequence per process.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counter held in this process. Values restart at 1 when the process restarts.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// The last value handed out.
    value: AtomicU64,
}

impl MemoryStore {
    /// Increments and returns the new value. `fetch_add` makes concurrent calls get distinct,
    /// consecutive values: no lost, duplicated or skipped numbers.
    pub fn increment(&self) -> u64 {
        // Relaxed suffices: the counter orders nothing but itself.
        self.value.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Sets the counter back to zero.
    pub fn reset(&self) {
        self.value.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_increments_hand_out_each_value_once() {
        let store = Arc::new(MemoryStore::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || (0..1000).map(|_| store.increment()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=8000).collect::<Vec<_>>());
        store.reset();
        assert_eq!(store.increment(), 1);
    }
}
