//! Health evidence: the target's health endpoints and its port, asked on their own
//! connections — for a hang (does the port still accept, does a patient request get anything,
//! do the liveness/readiness endpoints hang too, is the local process spinning or idle), and
//! next to the probe for probe coverage.

use std::time::{Duration, Instant};

use super::process;
use crate::diagnose::analyze::{coverage, hung, latency};
use crate::diagnose::args::Config;
use crate::diagnose::model;

/// Gathers what tells a hang from a slow service and what kind of hang it is: a new
/// connection to the port, one patient request (3× the timeout, 3..=30 s), the health
/// endpoints, and — for a process on this host — its CPU over the patient request, its threads
/// and the socket states on its port.
pub async fn collect_hang(
    config: &Config,
    hang: hung::Hang,
    pid: Option<i32>,
) -> hung::HangEvidence {
    let connect = Some(connect_check(&config.authority, config.plan.timeout).await);
    let patience = (config.plan.timeout * 3).clamp(Duration::from_secs(3), Duration::from_secs(30));
    let cpu_before = pid.and_then(process::read::snapshot).map(|s| s.cpu_seconds);
    let started = Instant::now();
    // Only a hang that lasted to the end needs the patient request: one that came back has
    // shown it was stuck, not slow.
    let patient = if hang.recovered_at.is_none() {
        Some(check(&config.plan.url, patience).await)
    } else {
        None
    };
    let mut health = Vec::new();
    for url in &config.health_urls {
        health.push(check(url, config.plan.timeout).await);
    }
    let window = started.elapsed().as_secs_f64();
    let process = pid.and_then(|pid| {
        let cpu_after = process::read::snapshot(pid)?.cpu_seconds;
        let (threads, thread_states) = process::read::thread_states(pid)?;
        Some(hung::ProcessState {
            pid,
            cpu_ratio: cpu_before.map_or(0.0, |b| (cpu_after - b).max(0.0) / window.max(0.1)),
            threads,
            thread_states,
        })
    });
    let sockets = config.local_port.map(process::read::sockets);
    hung::HangEvidence {
        hang,
        connect,
        patient,
        health,
        process,
        sockets,
    }
}

/// Opens (and closes) one TCP connection to `authority`.
pub async fn connect_check(authority: &str, timeout: Duration) -> hung::Connect {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority)).await {
        Err(_) => hung::Connect::TimedOut,
        Ok(Ok(_stream)) => hung::Connect::Accepted {
            ms: latency::round2(started.elapsed().as_secs_f64() * 1000.0),
        },
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => hung::Connect::Refused,
        Ok(Err(e)) => hung::Connect::Failed {
            message: e.to_string(),
        },
    }
}

/// One GET of `url` on a fresh client (its own connection) with `timeout`.
pub async fn check(url: &str, timeout: Duration) -> hung::HealthCheck {
    let started = Instant::now();
    let client = crate::http()
        .timeout(timeout)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build();
    let outcome = match client {
        Err(e) => model::Outcome::Error {
            message: e.to_string(),
        },
        Ok(client) => match client.get(url).send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                match r.bytes().await {
                    Ok(_) => model::Outcome::Status { code },
                    Err(e) => super::http::classify(&e),
                }
            }
            Err(e) => super::http::classify(&e),
        },
    };
    let latency_ms = if outcome == model::Outcome::Timeout {
        timeout.as_secs_f64() * 1000.0
    } else {
        started.elapsed().as_secs_f64() * 1000.0
    };
    hung::HealthCheck {
        url: url.to_string(),
        outcome,
        latency_ms: latency::round2(latency_ms),
    }
}

/// Most rounds of health checks during one probe (one round every [`WATCH_EVERY`]).
const WATCH_ROUNDS: usize = 400;
/// Pause between rounds of health checks.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Checks every URL in `urls` once per round, each on its own connection, until `stop` is
/// set (and once more after it), at most `WATCH_ROUNDS` rounds.
pub async fn watch(
    urls: Vec<(String, String)>,
    timeout: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<coverage::HealthSeries> {
    let mut series: Vec<coverage::HealthSeries> = urls
        .into_iter()
        .map(|(url, source)| coverage::HealthSeries {
            url,
            source,
            checks: Vec::new(),
        })
        .collect();
    for _ in 0..WATCH_ROUNDS {
        let last = stop.load(std::sync::atomic::Ordering::SeqCst);
        for s in &mut series {
            s.checks.push(check(&s.url, timeout).await);
        }
        if last {
            break;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    series
}

/// `rounds` checks of each URL, `WATCH_EVERY` apart (for probes found after the probe, in
/// the pod spec).
pub async fn sample(
    urls: Vec<(String, String)>,
    timeout: Duration,
    rounds: usize,
) -> Vec<coverage::HealthSeries> {
    let mut series = Vec::new();
    for (url, source) in urls {
        let mut checks = Vec::new();
        for i in 0..rounds {
            if i > 0 {
                tokio::time::sleep(WATCH_EVERY).await;
            }
            checks.push(check(&url, timeout).await);
        }
        series.push(coverage::HealthSeries {
            url,
            source,
            checks,
        });
    }
    series
}
