//! The saturation ramp (`--ramp`): steps the number of concurrent clients up (1, 4, 16, 64,
//! 256, 1,024 by default), each client on its own HTTP/1.1 connection sending one request after
//! another, and records per step the throughput, latency percentiles, connect time, errors by
//! cause and how many connections were never served at all. Meanwhile the health endpoints are
//! asked on fresh connections of their own, to see whether they starve.
//!
//! Bounded: only the given URL (and its health endpoints) is contacted, each step lasts a fixed
//! time, a step sends at most [`MAX_REQUESTS_PER_STEP`] requests, and every connect and request
//! has the probe's timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use serde::Serialize;

use super::{health, http, process};
use crate::diagnose::analyze::latency::{quantile, round2};
use crate::diagnose::model::Outcome;

/// Most requests in one step, over all its clients.
pub const MAX_REQUESTS_PER_STEP: usize = 200_000;

/// What to ramp.
#[derive(Debug, Clone)]
pub struct RampPlan {
    /// The target URL.
    pub url: String,
    /// Concurrent clients per step, ascending.
    pub steps: Vec<usize>,
    /// How long each step lasts.
    pub step_time: Duration,
    /// Timeout of each connect and each request.
    pub timeout: Duration,
    /// Health endpoints to keep asking during the ramp.
    pub health_urls: Vec<String>,
    /// The local process, for its CPU per step.
    pub pid: Option<i32>,
}

/// One step of the ramp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Concurrent clients (connections).
    pub connections: usize,
    /// Requests answered (any status).
    pub answered: usize,
    /// Answered per second.
    pub throughput: f64,
    /// Latency percentiles of answered requests, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Connect time percentiles, ms.
    pub connect_p50_ms: Option<f64>,
    /// 99th percentile of connect time, ms.
    pub connect_p99_ms: Option<f64>,
    /// Failed requests and connects by cause (`timeout`, `refused`, `5xx`, …).
    pub errors: BTreeMap<String, usize>,
    /// One message for each error cause that has one (what the client reported).
    pub error_examples: BTreeMap<String, String>,
    /// Connections that got no answer at all during the step: accepted by the kernel (or
    /// still connecting) but never served.
    pub unserved_connections: usize,
    /// CPU used by the local process during the step, as a share of one CPU.
    pub cpu_ratio: Option<f64>,
    /// Health checks during the step that passed.
    pub health_ok: usize,
    /// Health checks during the step in all.
    pub health_checks: usize,
}

impl Step {
    /// Failed requests and connects.
    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Per-client results of one step.
#[derive(Default)]
struct ClientResult {
    latencies: Vec<f64>,
    connects: Vec<f64>,
    errors: BTreeMap<String, usize>,
    examples: BTreeMap<String, String>,
}

impl ClientResult {
    /// Counts a failure by its cause, keeping the first message of each.
    fn fail(&mut self, prefix: &str, o: &Outcome) {
        let label = format!("{prefix}{}", o.label());
        *self.errors.entry(label.clone()).or_default() += 1;
        if let Some(why) = o.explain() {
            self.examples.entry(label).or_insert(why);
        }
    }
}

/// Runs the ramp.
pub async fn run(plan: &RampPlan) -> Vec<Step> {
    let mut steps = Vec::new();
    for &connections in &plan.steps {
        steps.push(step(plan, connections).await);
    }
    steps
}

async fn step(plan: &RampPlan, connections: usize) -> Step {
    let deadline = Instant::now() + plan.step_time;
    let budget = Arc::new(AtomicUsize::new(MAX_REQUESTS_PER_STEP));
    let stop = Arc::new(AtomicBool::new(false));
    let health_urls: Vec<(String, String)> = plan
        .health_urls
        .iter()
        .map(|u| (u.clone(), "ramp".to_string()))
        .collect();
    let watcher = tokio::spawn(health::watch(health_urls, plan.timeout, stop.clone()));
    let cpu_before = plan
        .pid
        .and_then(process::read::snapshot)
        .map(|s| s.cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (url, budget) = (plan.url.clone(), budget.clone());
        let timeout = plan.timeout;
        tasks.push(tokio::spawn(async move {
            client(&url, timeout, deadline, &budget).await
        }));
    }
    let mut all = ClientResult::default();
    let mut unserved = 0;
    for t in tasks {
        let r = t.await.unwrap_or_default();
        if r.latencies.is_empty() {
            unserved += 1;
        }
        all.latencies.extend(r.latencies);
        all.connects.extend(r.connects);
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
        for (k, v) in r.examples {
            all.examples.entry(k).or_insert(v);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let health = watcher.await.unwrap_or_default();
    let cpu_ratio = match (cpu_before, plan.pid.and_then(process::read::snapshot)) {
        (Some(b), Some(a)) => Some(round2((a.cpu_seconds - b).max(0.0) / elapsed.max(0.001))),
        _ => None,
    };
    let pct = |v: &mut Vec<f64>, q: f64| {
        if v.is_empty() {
            None
        } else {
            v.sort_by(f64::total_cmp);
            Some(round2(quantile(v, q)))
        }
    };
    let (health_ok, health_checks) = health.iter().fold((0, 0), |(ok, n), s| {
        (
            ok + s.checks.iter().filter(|c| c.outcome.is_success()).count(),
            n + s.checks.len(),
        )
    });
    Step {
        connections,
        answered: all.latencies.len(),
        throughput: round2(all.latencies.len() as f64 / elapsed.max(0.001)),
        p50_ms: pct(&mut all.latencies, 0.5),
        p99_ms: pct(&mut all.latencies, 0.99),
        connect_p50_ms: pct(&mut all.connects, 0.5),
        connect_p99_ms: pct(&mut all.connects, 0.99),
        errors: all.errors,
        error_examples: all.examples,
        unserved_connections: unserved,
        cpu_ratio,
        health_ok,
        health_checks,
    }
}

/// One simulated client: connects, sends requests one after another on its connection until
/// the step ends, reconnecting after an error.
async fn client(
    url: &str,
    timeout: Duration,
    deadline: Instant,
    budget: &AtomicUsize,
) -> ClientResult {
    let mut r = ClientResult::default();
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        *r.errors.entry("error".into()).or_default() += 1;
        return r;
    };
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let authority = if authority.contains(':') {
        authority
    } else {
        format!("{authority}:80")
    };
    let mut sender: Option<hyper::client::conn::http1::SendRequest<String>> = None;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let sender_now = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let t = Instant::now();
                match tokio::time::timeout(
                    timeout.min(left),
                    tokio::net::TcpStream::connect(&authority),
                )
                .await
                {
                    Err(_) => {
                        if Instant::now() < deadline {
                            *r.errors.entry("connect-timeout".into()).or_default() += 1;
                        }
                        continue;
                    }
                    Ok(Err(e)) => {
                        r.fail("connect-", &http::classify_chain(&e));
                        // Do not spin on a refused port: the step's time bounds the retries.
                        tokio::time::sleep(Duration::from_millis(50).min(left)).await;
                        continue;
                    }
                    Ok(Ok(stream)) => {
                        r.connects.push(t.elapsed().as_secs_f64() * 1000.0);
                        let io = hyper_util::rt::TokioIo::new(stream);
                        match hyper::client::conn::http1::handshake::<_, String>(io).await {
                            Ok((s, conn)) => {
                                tokio::spawn(conn);
                                s
                            }
                            Err(e) => {
                                r.fail("", &http::classify_chain(&e));
                                continue;
                            }
                        }
                    }
                }
            }
        };
        if budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_err()
        {
            break;
        }
        let mut s = sender_now;
        let req = match hyper::Request::get(uri.clone())
            .header(hyper::header::HOST, authority.as_str())
            .body(String::new())
        {
            Ok(req) => req,
            Err(_) => break,
        };
        let t = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let resp = s.send_request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        })
        .await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(Ok(status)) => {
                r.latencies.push(ms);
                if status >= 500 {
                    *r.errors.entry(status.to_string()).or_default() += 1;
                }
                // A server shedding load closes the connection after its 503: reconnect
                // rather than count the closed connection as another failure.
                if status != 503 {
                    sender = Some(s);
                }
            }
            // The server closed an idle keep-alive connection before the request went out:
            // not a failure of the request, just reconnect.
            Ok(Err(e)) if e.is_canceled() => {}
            Err(_) => *r.errors.entry(Outcome::Timeout.label()).or_default() += 1,
            Ok(Err(e)) => r.fail("", &http::classify_chain(&e)),
        }
    }
    r
}
