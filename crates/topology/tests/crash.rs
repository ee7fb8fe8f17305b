//! One replica killed with SIGKILL under load: failed requests are bounded by the requests in
//! flight on it (nginx retries connection errors, so normally none fail), the others serve the
//! rest, and no value is returned twice.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use topology::load::{Load, duplicates, sorted_values};
use topology::{Options, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_fails_at_most_its_in_flight_requests_and_duplicates_nothing() {
    let mut topo = Topology::start(Options::default()).await.unwrap();
    let workers = 4;
    let load = Load {
        workers,
        pace: Duration::from_millis(10),
        max_requests: 20_000,
        max_duration: Duration::from_secs(60),
    }
    .start(&topo.url("/counter"))
    .unwrap();
    // Steady load before the kill.
    load.wait_for_answers(100, Duration::from_secs(30))
        .await
        .unwrap();
    let killed_at = Instant::now();
    topo.signal_replica(1, "KILL").unwrap();
    topo.wait_replica_exit(1, Duration::from_secs(10)).unwrap();
    // The load goes on, on the survivors.
    load.wait_for_answers(200, Duration::from_secs(30))
        .await
        .unwrap();
    let recovery = topo.start_replica(1).await.unwrap();
    eprintln!(
        "replica-2 replaced and ready {recovery:?} after the restart began ({:?} after the kill)",
        killed_at.elapsed()
    );
    // Load on the replaced replica too.
    load.wait_for_answers(100, Duration::from_secs(30))
        .await
        .unwrap();
    let outcomes = load.stop().await;
    let failed: Vec<_> = outcomes.iter().filter(|o| o.status != Some(200)).collect();
    let values = sorted_values(&outcomes);
    let gaps = values.last().copied().unwrap_or(0) - values.len() as u64;
    let instances: HashSet<_> = outcomes.iter().filter_map(|o| o.instance.clone()).collect();
    eprintln!(
        "crash: {} requests, {} failed, {} values never seen by a client (gaps)",
        outcomes.len(),
        failed.len(),
        gaps
    );
    assert!(
        failed.len() <= workers,
        "more failures ({}) than requests that can be in flight ({workers}): {failed:?}",
        failed.len()
    );
    assert_eq!(duplicates(&values), Vec::<u64>::new(), "duplicated values");
    assert!(
        gaps <= workers as u64,
        "{gaps} gaps, at most {workers} requests were in flight"
    );
    assert_eq!(instances.len(), 3, "every replica served: {instances:?}");
}
