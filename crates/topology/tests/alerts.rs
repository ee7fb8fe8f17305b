//! Alerts end to end: Prometheus (the chart's rules, `for:` shortened) → Alertmanager → the
//! webhook. A replica with `--fault slow-even=2s` makes an alert arrive naming it; a healthy
//! topology under the same load produces none within several evaluation cycles.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use topology::load::Load;
use topology::{Options, Topology};

fn options(fault: bool) -> Options {
    Options {
        // Three, not two: round robin over two replicas would hand replica-1 only odd values,
        // and slow-even would never trigger.
        replicas: 3,
        monitoring: true,
        for_override: Some("5s".into()),
        extra_args: if fault {
            vec![(0, vec!["--fault".into(), "slow-even=2s".into()])]
        } else {
            Vec::new()
        },
        ..Options::default()
    }
}

/// Light load: one worker, a few requests a second (each slow request starts CPU burners).
fn light_load(max: Duration) -> Load {
    Load {
        workers: 1,
        pace: Duration::from_millis(300),
        max_requests: 400,
        max_duration: max,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_slow_even_requests_raises_an_alert_that_reaches_the_webhook() {
    let topo = Topology::start(options(true)).await.unwrap();
    let monitoring = topo.monitoring.as_ref().unwrap();
    // Prometheus scrapes the management port, so that is the `instance` label.
    let faulty = format!(
        "127.0.0.1:{}",
        topo.replicas[0].as_ref().unwrap().management_port
    );
    monitoring
        .prometheus
        .wait_targets_up(3, Duration::from_secs(30))
        .await
        .unwrap();
    let load = light_load(Duration::from_secs(90))
        .start(&topo.url("/counter"))
        .unwrap();
    let started = Instant::now();
    let alerts = loop {
        let firing = monitoring.webhook.firing();
        // The fault-mode rule (if any) fires from configuration alone; wait for the symptom.
        if firing
            .iter()
            .any(|(name, _)| name.to_lowercase().contains("latency"))
        {
            break firing;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no latency alert reached the webhook within 90 s (rules: {:?}); got {:?}",
            monitoring.prometheus.alert_names,
            firing
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let outcomes = load.stop().await;
    eprintln!(
        "first alert(s) after {:?} with {} requests sent: {alerts:?} (rules: {:?})",
        started.elapsed(),
        outcomes.len(),
        monitoring.prometheus.alert_names
    );
    for (name, instance) in &alerts {
        assert!(
            instance.is_empty() || *instance == faulty,
            "{name} fired for the healthy instance {instance} (faulty: {faulty})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_topology_under_load_raises_no_alert() {
    let topo = Topology::start(options(false)).await.unwrap();
    let monitoring = topo.monitoring.as_ref().unwrap();
    // Quiet means something only while every replica is scraped.
    monitoring
        .prometheus
        .wait_targets_up(3, Duration::from_secs(30))
        .await
        .unwrap();
    // 20 s: 20 scrapes and evaluations, four times the shortened `for:`, plus Alertmanager's
    // 1 s group wait; an alert that would fire has had time to reach the webhook.
    let load = light_load(Duration::from_secs(20))
        .start(&topo.url("/counter"))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let firing = monitoring.webhook.firing();
        assert!(
            firing.is_empty(),
            "alerts on a healthy topology: {firing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let outcomes = load.stop().await;
    assert!(outcomes.iter().all(|o| o.status == Some(200)));
    assert_eq!(
        monitoring.prometheus.targets_up().await.unwrap(),
        3,
        "a replica stopped being scraped during the quiet period"
    );
}
