//! The Redis store against a real `redis-server`: one gap-free sequence across instances in
//! fewer round trips than requests (coalesced `INCRBY`), 503 and failing readiness during an
//! outage, recovery without a duplicated value, and a corrupt counter key failing readiness.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{RedisServer, TestApp, client, counter_value, get_text, redis_cli, wait_until_ok};

async fn spawn_on(redis: &RedisServer, instance: &str) -> TestApp {
    let url = redis.url();
    TestApp::spawn(&[
        "--store",
        "redis",
        "--redis-url",
        &url,
        "--instance",
        instance,
        "--drain-delay",
        "0s",
    ])
    .await
}

/// docs/service.md gives the readiness reason the service sent: every reason quoted on a line
/// about `/readyz` that contains `kind` is exactly `reason`, and there is at least one.
fn assert_documented(kind: &str, reason: &str) {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/service.md"
    ))
    .unwrap();
    let quoted: Vec<&str> = docs
        .lines()
        .filter(|line| line.contains("`/readyz`"))
        .flat_map(|line| line.split('`').skip(1).step_by(2))
        .filter(|q| q.contains(" store ") && q.contains(kind))
        .collect();
    assert!(
        !quoted.is_empty(),
        "docs/service.md gives no /readyz reason with {kind:?}"
    );
    for q in quoted {
        assert_eq!(
            q, reason,
            "docs/service.md gives a /readyz reason the service does not send"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_redis_hand_out_one_gap_free_duplicate_free_sequence() {
    let redis = RedisServer::start();
    let apps = [
        spawn_on(&redis, "a").await,
        spawn_on(&redis, "b").await,
        spawn_on(&redis, "c").await,
    ];
    for app in &apps {
        wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    }
    let http = client();
    let mut tasks = Vec::new();
    for app in &apps {
        for _ in 0..8 {
            let (http, url) = (http.clone(), app.url("/counter"));
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..150 {
                    let r = http.get(&url).send().await.unwrap();
                    let instance = r.headers()["x-instance"].to_str().unwrap().to_string();
                    seen.push((counter_value(&r.text().await.unwrap()), instance));
                }
                seen
            }));
        }
    }
    let mut values = Vec::new();
    let mut instances = HashSet::new();
    for t in tasks {
        for (v, i) in t.await.unwrap() {
            values.push(v);
            instances.insert(i);
        }
    }
    values.sort_unstable();
    assert_eq!(values.len(), 3 * 8 * 150);
    assert!(values.iter().copied().eq(1..=3600), "not exactly 1..=3600");
    assert_eq!(instances.len(), 3);
    // Coalesced: 24 concurrent clients, fewer INCRBY round trips than requests.
    let stats = redis_cli(&redis, &["INFO", "commandstats"]);
    let calls: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_incrby:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no INCRBY in {stats}"));
    assert!(calls < 3600, "{calls} INCRBY for 3600 requests");
    eprintln!("{calls} INCRBY round trips for 3600 requests from 24 clients");
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_gives_503_and_unready_then_counting_resumes_without_duplicates() {
    let mut redis = RedisServer::start();
    let app = spawn_on(&redis, "solo").await;
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    let mut values = Vec::new();
    for _ in 0..20 {
        values.push(counter_value(&get_text(&http, &app.url("/counter")).await));
    }
    assert_eq!(values, (1..=20).collect::<Vec<_>>());

    redis.stop();
    let mut failures = 0;
    for _ in 0..5 {
        let r = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.text().await.unwrap(), "counter store unavailable");
        failures += 1;
    }
    let ready = http.get(app.mgmt("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.text().await.unwrap(), "redis store unavailable");
    assert_documented("unavailable", "redis store unavailable");
    let metrics = get_text(&http, &app.mgmt("/metrics")).await;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "metrics_app_store_errors_total{store=\"redis\",operation=\"increment\"}"
        )),
        "store errors not counted:\n{metrics}"
    );

    redis.restart();
    // Recovery needs no restart of the service: it reconnects by itself.
    let started = Instant::now();
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(15)).await;
    let recovered_in = started.elapsed();
    for _ in 0..20 {
        let r = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        values.push(counter_value(&r.text().await.unwrap()));
    }
    let unique: HashSet<_> = values.iter().collect();
    assert_eq!(
        unique.len(),
        values.len(),
        "a value was handed out twice: {values:?}"
    );
    // AOF kept the count: it resumes after 20 (no reset), with at most one gap per failed call.
    assert!(
        values[20] > 20 && values[20] <= 21 + failures,
        "resumed at {} after 20",
        values[20]
    );
    assert!(values[20..].windows(2).all(|w| w[1] == w[0] + 1));
    eprintln!("recovered {recovered_in:?} after the Redis restart");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_key_that_is_not_a_number_fails_readiness_naming_the_data_problem() {
    let redis = RedisServer::start();
    let app = spawn_on(&redis, "a").await;
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    // Not a number, numbers that `INCRBY` refuses (a sign, a leading zero, beyond i64, the
    // maximum it cannot increment), and one that would count from below zero.
    let corrupt_values = [
        "not-a-number",
        "+5",
        "05",
        "9223372036854775808",
        "9223372036854775807",
        "-3",
    ];
    for corrupt in corrupt_values {
        redis_cli(&redis, &["SET", "metrics-app:counter", corrupt]);
        let counter = http.get(app.url("/counter")).send().await.unwrap();
        assert_eq!(counter.status(), 500, "{corrupt}");
        let body = counter.text().await.unwrap();
        assert!(body.contains("invalid counter value"), "{corrupt}: {body}");
        let ready = http.get(app.mgmt("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "{corrupt}");
        let reason = ready.text().await.unwrap();
        assert!(
            reason.contains("invalid counter value"),
            "{corrupt}: {reason}"
        );
        assert_documented("invalid counter", &reason);
    }
    // Repaired, it is ready again and counts on from the repaired value.
    redis_cli(&redis, &["SET", "metrics-app:counter", "41"]);
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(5)).await;
    let body = get_text(&http, &app.url("/counter")).await;
    assert_eq!(counter_value(&body), 42);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_every_answered_value_is_already_on_the_replica_and_without_one_503() {
    let primary = RedisServer::start();
    let mut replica = primary.start_replica().await;
    let url = primary.url();
    let app = TestApp::spawn(&[
        "--store",
        "redis",
        "--redis-url",
        &url,
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout",
        "200ms",
        "--drain-delay",
        "0s",
    ])
    .await;
    wait_until_ok(&app.mgmt("/readyz"), Duration::from_secs(10)).await;
    let http = client();
    for expected in 1..=20 {
        let body = get_text(&http, &app.url("/counter")).await;
        assert_eq!(counter_value(&body), expected);
        // Answered only once the replica had it: a promoted replica would go on from here.
        let on_replica: u64 = redis_cli(&replica, &["GET", "metrics-app:counter"])
            .trim()
            .parse()
            .unwrap();
        assert!(
            on_replica >= expected,
            "replica at {on_replica}, answered {expected}"
        );
    }
    replica.stop();
    let r = http.get(app.url("/counter")).send().await.unwrap();
    assert_eq!(r.status(), 503, "answered without a replica");
    assert_eq!(r.text().await.unwrap(), "counter store unavailable");
    app.stop().await;
}
