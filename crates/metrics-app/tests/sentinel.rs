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

use common::{TestApp, client, counter_value, eventually, wait_until_ok};
use testkit::redis::Redis;
use testkit::sentinel::Sentinel;

/// A primary, two synced replicas, and three Sentinels that know all of them and each other.
async fn redis_ha() -> (Redis, Vec<Redis>, Vec<Sentinel>) {
    let primary = Redis::start().unwrap();
    let replicas = vec![
        Redis::start_replica_of(&primary).unwrap(),
        Redis::start_replica_of(&primary).unwrap(),
    ];
    for r in &replicas {
        r.wait_synced(Duration::from_secs(10)).await.unwrap();
    }
    let sentinels: Vec<Sentinel> = (0..3)
        .map(|_| Sentinel::start(primary.port, 2).unwrap())
        .collect();
    // A failover needs a quorum that knows the replicas: wait for the Sentinels to have found
    // each other (hello messages through the primary) and the replicas (the primary's INFO).
    let acquainted = eventually(Duration::from_secs(20), || {
        sentinels.iter().all(|s| {
            s.other_sentinels().is_ok_and(|n| n == 2) && s.known_replicas().is_ok_and(|n| n == 2)
        })
    })
    .await;
    assert!(
        acquainted,
        "the sentinels did not find each other and the replicas:\n{}",
        sentinels[0].output()
    );
    (primary, replicas, sentinels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_primary_is_followed_to_the_promoted_replica_without_a_duplicate_value() {
    let (mut primary, _replicas, sentinels) = redis_ha().await;
    let addresses: Vec<String> = sentinels.iter().map(Sentinel::address).collect();
    let addresses = addresses.join(",");
    let app = TestApp::spawn(&[
        "--store",
        "redis",
        "--redis-sentinels",
        &addresses,
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout",
        "500ms",
        "--drain-delay",
        "0s",
    ])
    .await;
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
    let promoted = eventually(Duration::from_secs(30), || {
        sentinels[0].primary_port().is_ok_and(|p| p != old_port)
    })
    .await;
    assert!(promoted, "no failover:\n{}", sentinels[0].output());
    let new_port = sentinels[0].primary_port().unwrap();
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
