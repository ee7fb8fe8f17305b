//! The Redis store through Sentinel against real processes: a primary, two replicas and three
//! Sentinels. The primary is killed (SIGKILL) under concurrent load; the service follows the
//! promoted replica without a restart, and because each batch waits for a replica (`WAIT 1`)
//! no value is ever handed out twice.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestApp, client, counter_value, wait_until_ok};
use testkit::redis::Redis;
use testkit::redis_ha::RedisHa;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_is_followed_to_the_promoted_replica_without_a_duplicate_value() {
    let mut primary = Redis::start().unwrap();
    let ha = RedisHa::start(&primary).await.unwrap();
    let mut args = vec![
        "--store".to_string(),
        "redis".into(),
        "--drain-delay".into(),
        "0s".into(),
    ];
    args.extend(ha.app_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let app = TestApp::spawn(&args).await;
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;

    // Eight clients in a loop until told to stop (at most 60 s each).
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (http, url, stop) = (client(), app.url("/counter"), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                let r = http.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body = r.text().await.unwrap();
                // When the answer came: a request in flight at the kill may fail after it.
                let answered = started.elapsed();
                seen.push((
                    answered,
                    status,
                    (status == 200).then(|| counter_value(&body)),
                ));
                if status != 200 {
                    assert_eq!(body, "counter store unavailable", "status {status}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            seen
        }));
    }
    // Load for a while on the first primary, then kill it.
    while started.elapsed() < Duration::from_millis(800) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old_port = primary.port;
    let killed = started.elapsed(); // before the signal: requests can fail as it lands
    primary.kill();
    let new_port = ha
        .wait_failover(old_port, Duration::from_secs(30))
        .await
        .unwrap();
    // Ready again on the new primary, then a little more load there.
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(30)).await;
    let ready = started.elapsed();
    let after_ready = Instant::now();
    while after_ready.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }

    let values: Vec<u64> = outcomes.iter().filter_map(|o| o.2).collect();
    let unique: HashSet<u64> = values.iter().copied().collect();
    assert_eq!(unique.len(), values.len(), "a value was handed out twice");
    let before: Vec<_> = outcomes.iter().filter(|o| o.0 < killed).collect();
    // Answered once readiness was back: certainly from the promoted replica (a batch the old
    // primary ran just before the kill can still be answered just after it).
    let after_ok: Vec<_> = outcomes
        .iter()
        .filter(|o| o.0 > ready && o.1 == 200)
        .collect();
    assert!(
        before.iter().filter(|o| o.1 == 200).count() > 10,
        "too little load before the kill"
    );
    assert!(!after_ok.is_empty(), "nothing served after the failover");
    let last_before = before.iter().filter_map(|o| o.2).max().unwrap();
    let first_after = after_ok.iter().filter_map(|o| o.2).min().unwrap();
    assert!(
        first_after > last_before,
        "the new primary went back to {first_after} after {last_before}"
    );
    let failures: Vec<_> = outcomes.iter().filter(|o| o.1 != 200).collect();
    // Failures only while there was no primary: none answered before the kill, none after
    // readiness came back plus the time a request in flight then takes.
    assert!(
        failures.iter().all(|o| o.0 >= killed),
        "failed before the kill at {killed:?}: {:?}",
        failures.iter().filter(|o| o.0 < killed).collect::<Vec<_>>()
    );
    let last_failure = failures.iter().map(|o| o.0).max().unwrap_or(killed);
    assert!(
        last_failure <= ready + Duration::from_secs(1),
        "failures went on {:?} after readiness returned",
        last_failure - ready
    );
    eprintln!(
        "sentinel failover: primary :{old_port} killed at {killed:?}, :{new_port} promoted, ready again {:?} after the kill; {} requests, {} failed (503) during the failover, {} distinct values",
        ready - killed,
        outcomes.len(),
        failures.len(),
        unique.len()
    );
    app.stop().await;
}
