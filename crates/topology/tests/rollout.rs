//! Rolling restart under steady bounded load through nginx: no failed request, and the counter
//! values seen form exactly 1..=n.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use topology::load::{Load, duplicates, sorted_values};
use topology::{Options, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request_and_loses_no_value() {
    let mut topo = Topology::start(Options::default()).await.unwrap();
    let load = Load {
        workers: 4,
        pace: Duration::from_millis(10),
        max_requests: 20_000,
        max_duration: Duration::from_secs(90),
    }
    .start(&topo.url("/counter"))
    .unwrap();
    // Steady load before the first restart.
    load.wait_for_answers(100, Duration::from_secs(30))
        .await
        .unwrap();
    let started = Instant::now();
    for (i, (exit, ready)) in topo.rolling_restart().await.unwrap().iter().enumerate() {
        eprintln!(
            "replica-{}: exited {exit:?} after SIGTERM, new one ready in {ready:?}",
            i + 1
        );
    }
    let rollout = started.elapsed();
    // Load on the new replicas too.
    load.wait_for_answers(100, Duration::from_secs(30))
        .await
        .unwrap();
    let outcomes = load.stop().await;
    let failed: Vec<_> = outcomes.iter().filter(|o| o.status != Some(200)).collect();
    let values = sorted_values(&outcomes);
    eprintln!(
        "rollout of {} replicas took {rollout:?}; {} requests, {} failed",
        topo.replicas.len(),
        outcomes.len(),
        failed.len()
    );
    assert!(outcomes.len() > 100, "too little load: {}", outcomes.len());
    assert!(
        failed.is_empty(),
        "failed requests: {:?}\nnginx error log:\n{}",
        &failed[..failed.len().min(10)],
        topo.nginx.error_log()
    );
    assert_eq!(duplicates(&values), Vec::<u64>::new(), "duplicated values");
    let n = values.len() as u64;
    assert!(
        values.iter().copied().eq(1..=n),
        "values are not exactly 1..={n}"
    );
}
