//! The Redis primary killed (SIGKILL) under load through nginx, with the HA shape (two Redis
//! replicas, three Sentinels, metrics-app with `--redis-sentinels` and `WAIT 1`): no value is
//! handed out twice over the whole run, the failed requests all fall inside the failover and
//! are counted, and every replica is ready again within a bound (docs/local-topology.md has
//! the measured figures).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use topology::load::{Load, duplicates, sorted_values};
use topology::{Options, Topology};

/// From the kill until every replica answers `/readyz` 200 again: Sentinel's detection
/// (`down-after-milliseconds` 1 s), election and promotion, then the replicas' next store call.
/// Measured at 2–4 s here; the bound leaves room for a loaded machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_redis_primary_under_load_loses_no_uniqueness_and_recovers_in_bound() {
    let mut topo = Topology::start(Options {
        redis_ha: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let ha = topo.redis_ha.as_ref().unwrap();
    let old_port = ha.primary_port().unwrap();
    assert_eq!(old_port, topo.redis.port);

    let load = Load {
        workers: 4,
        pace: Duration::from_millis(5),
        max_requests: 50_000,
        max_duration: Duration::from_secs(90),
    }
    .start(&topo.url("/counter"))
    .unwrap();
    let started = Instant::now();
    load.wait_for_answers(200, Duration::from_secs(30))
        .await
        .unwrap();

    let killed = started.elapsed(); // before the signal: requests can fail as it lands
    topo.redis.kill();
    let ha = topo.redis_ha.as_ref().unwrap();
    let new_port = ha
        .wait_failover(old_port, Duration::from_secs(30))
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for r in topo.replicas.iter().flatten() {
        let url = format!("{}/readyz", r.management_url());
        let until = Instant::now() + RECOVERY_BOUND;
        loop {
            if http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < until,
                "{} not ready {RECOVERY_BOUND:?} after the failover",
                r.spec.instance
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ready = started.elapsed();
    // Load on the new primary, then stop.
    load.wait_for_answers(200, Duration::from_secs(30))
        .await
        .unwrap();
    let outcomes = load.stop().await;

    let values = sorted_values(&outcomes);
    assert_eq!(duplicates(&values), Vec::<u64>::new(), "duplicate values");
    let failures: Vec<_> = outcomes.iter().filter(|o| o.status != Some(200)).collect();
    assert!(
        failures.iter().all(|o| o.status == Some(503)),
        "only 503 during a failover (nginx retries other replicas on connection errors): {:?}",
        failures.iter().find(|o| o.status != Some(503))
    );
    assert!(
        failures.iter().all(|o| o.answered_at >= killed),
        "failures before the kill: {:?}",
        failures.iter().find(|o| o.answered_at < killed)
    );
    let last_failure = failures.iter().map(|o| o.answered_at).max();
    if let Some(last) = last_failure {
        assert!(
            last <= ready + Duration::from_secs(2),
            "failures went on {:?} after every replica was ready",
            last.saturating_sub(ready)
        );
    }
    let served_after = outcomes
        .iter()
        .filter(|o| o.answered_at > ready && o.status == Some(200))
        .count();
    assert!(served_after > 0, "nothing served after the failover");
    let before_max = outcomes
        .iter()
        .filter(|o| o.answered_at < killed)
        .filter_map(|o| o.value)
        .max()
        .unwrap();
    let after_min = outcomes
        .iter()
        .filter(|o| o.sent_at > ready)
        .filter_map(|o| o.value)
        .min()
        .unwrap();
    assert!(after_min > before_max, "{after_min} after {before_max}");
    eprintln!(
        "failover through nginx: primary :{old_port} killed, :{new_port} promoted; all 3 replicas ready {:?} after the kill; {} requests, {} answered 503, {} distinct values, 0 duplicates",
        ready - killed,
        outcomes.len(),
        failures.len(),
        values.len()
    );
}
