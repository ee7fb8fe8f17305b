//! Redis restarted (AOF, `appendfsync always`): `/counter` answers 503 through the gateway
//! during the outage, no value is returned twice, and counting resumes at the next value.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use topology::load::{counter_value, duplicates};
use topology::{Options, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_503_then_counting_resumes_without_duplicates() {
    let mut topo = Topology::start(Options::default()).await.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = topo.url("/counter");
    let mut values = Vec::new();
    for _ in 0..30 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        values.push(counter_value(&r.text().await.unwrap()).unwrap());
    }
    let before = *values.last().unwrap();

    topo.redis.stop().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http.get(&url).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 503),
        "during the outage: {statuses:?}"
    );

    topo.redis.start_again().unwrap();
    let restarted = Instant::now();
    let mut during_recovery = 0;
    let first_after = loop {
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 200 {
            break counter_value(&r.text().await.unwrap()).unwrap();
        }
        assert_eq!(r.status(), 503);
        during_recovery += 1;
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "no recovery within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "redis restart: first 200 {:?} after redis listened again ({during_recovery} 503s meanwhile)",
        restarted.elapsed()
    );
    values.push(first_after);
    for _ in 0..30 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        values.push(counter_value(&r.text().await.unwrap()).unwrap());
    }
    assert_eq!(first_after, before + 1, "counting resumes where it stopped");
    values.sort_unstable();
    assert_eq!(duplicates(&values), Vec::<u64>::new());
    let n = values.len() as u64;
    assert!(values.iter().copied().eq(1..=n));
}
