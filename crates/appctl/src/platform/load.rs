//! `appctl load URL`: a bounded load test — a fixed number of concurrent clients, or a fixed
//! request rate — with a live progress line (requests, errors, p50/p99) and, with
//! `--watch-hpa`, the HPA's replica count, as the users did with `ab` to see autoscaling.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Error, Result};

/// Flags of `appctl load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// URL to load, e.g. http://prod.metrics-app.localtest.me/counter
    // The doc comment is the --help text, where a plain URL reads best.
    #[allow(rustdoc::bare_urls)]
    pub url: String,
    /// Requests per second (open loop).
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<u32>,
    /// Concurrent clients, each sending as fast as answers come (closed loop; default 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// How long (at most 10m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Also show the metrics-app HPA's current/desired replicas (watched, on every change).
    #[arg(long)]
    pub watch_hpa: bool,
    /// Namespace of the HPA for --watch-hpa (default: the environment the URL's host names,
    /// `<env>.metrics-app.localtest.me` → `metrics-app-<env>`).
    #[arg(long)]
    pub namespace: Option<String>,
}

/// The namespace of the environment whose public hostname is `host`
/// (`<env>.metrics-app.localtest.me` → `metrics-app-<env>`, as deploy/argocd names them),
/// else dev's.
pub fn env_namespace(host: &str) -> String {
    match host.strip_suffix(".metrics-app.localtest.me") {
        Some(env) if !env.is_empty() && !env.contains('.') => format!("metrics-app-{env}"),
        _ => "metrics-app-dev".into(),
    }
}

/// How the load is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// N clients in a loop.
    Clients(usize),
    /// R requests per second.
    Rate(u32),
}

/// Checked `load` options.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target.
    pub url: String,
    /// Mode.
    pub mode: Mode,
    /// Duration.
    pub duration: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl LoadArgs {
    /// Validates the flags.
    pub fn validate(&self) -> Result<LoadConfig> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            Error::Usage(format!(
                "URL {:?}: expected an absolute http:// URL ({e})",
                self.url
            ))
        })?;
        if url.scheme() != "http" {
            return Err(Error::Usage(format!(
                "URL {:?}: only http:// is supported",
                self.url
            )));
        }
        let mode = match (self.rate, self.concurrency) {
            (Some(r), _) if !(1..=100_000).contains(&r) => {
                return Err(Error::Usage(format!("--rate {r}: expected 1..=100000")));
            }
            (Some(r), _) => Mode::Rate(r),
            (None, Some(c)) if !(1..=1024).contains(&c) => {
                return Err(Error::Usage(format!(
                    "--concurrency {c}: expected 1..=1024"
                )));
            }
            (None, c) => Mode::Clients(c.unwrap_or(8)),
        };
        if self.duration.is_zero() || self.duration > Duration::from_secs(600) {
            return Err(Error::Usage(format!(
                "--duration {}: expected more than 0 and at most 10m",
                humantime::format_duration(self.duration)
            )));
        }
        Ok(LoadConfig {
            url: self.url.clone(),
            mode,
            duration: self.duration,
            timeout: self.timeout,
        })
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Requests completed.
    pub requests: usize,
    /// Non-2xx answers and failed requests.
    pub errors: usize,
    /// The errors by cause: an HTTP status, or why there was no answer (`refused`, `reset`,
    /// `timeout`, `dns`, `tls`, `error`), named as `appctl diagnose` names them.
    pub causes: std::collections::BTreeMap<String, usize>,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Requests per second achieved.
    pub rate: f64,
}

#[derive(Debug, Default)]
struct Stats {
    latencies_ms: Vec<f64>,
    errors: usize,
    causes: std::collections::BTreeMap<String, usize>,
}

impl Stats {
    fn summary(&self, elapsed: Duration) -> Summary {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            if v.is_empty() {
                0.0
            } else {
                v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
            }
        };
        Summary {
            requests: v.len(),
            errors: self.errors,
            causes: self.causes.clone(),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            rate: v.len() as f64 / elapsed.as_secs_f64().max(0.001),
        }
    }
}

/// Most latencies kept (memory stays bounded on long, fast runs).
const MAX_SAMPLES: usize = 2_000_000;

async fn one(client: &reqwest::Client, url: &str, stats: &Mutex<Stats>) {
    let t = Instant::now();
    let failure = match client.get(url).send().await {
        Ok(r) => {
            let status = r.status();
            let _ = r.bytes().await;
            (!status.is_success()).then(|| status.as_u16().to_string())
        }
        Err(e) => Some(crate::diagnose::collect::http::classify(&e).label()),
    };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if let Ok(mut s) = stats.lock() {
        if s.latencies_ms.len() < MAX_SAMPLES {
            s.latencies_ms.push(ms);
        }
        if let Some(cause) = failure {
            s.errors += 1;
            *s.causes.entry(cause).or_default() += 1;
        }
    }
}

/// Runs the load; `tick` is called about once a second with the running summary.
pub async fn run(cfg: &LoadConfig, mut tick: impl FnMut(Duration, &Summary)) -> Result<Summary> {
    let client = crate::http()
        .timeout(cfg.timeout)
        .no_proxy()
        .build()
        .map_err(Error::http(format!("a client for {}", cfg.url)))?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let end = started + cfg.duration;
    let mut tasks = Vec::new();
    match cfg.mode {
        Mode::Clients(n) => {
            for _ in 0..n {
                let (client, url, stats) = (client.clone(), cfg.url.clone(), stats.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        one(&client, &url, &stats).await;
                    }
                }));
            }
        }
        Mode::Rate(r) => {
            let (client, url, stats) = (client.clone(), cfg.url.clone(), stats.clone());
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(r)));
                // In flight at most: what one timeout's worth of requests at this rate needs.
                let permits = Arc::new(tokio::sync::Semaphore::new(1024));
                while Instant::now() < end {
                    every.tick().await;
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        continue; // saturated: drop this tick rather than queue without bound
                    };
                    let (client, url, stats) = (client.clone(), url.clone(), stats.clone());
                    tokio::spawn(async move {
                        one(&client, &url, &stats).await;
                        drop(permit);
                    });
                }
            }));
        }
    }
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    while Instant::now() < end {
        second.tick().await;
        let s = stats
            .lock()
            .map(|s| s.summary(started.elapsed()))
            .unwrap_or_default();
        tick(started.elapsed(), &s);
    }
    for t in tasks {
        let _ = t.await;
    }
    let summary = stats
        .lock()
        .map(|s| s.summary(started.elapsed()))
        .unwrap_or_default();
    Ok(summary)
}

/// `appctl load`: the run with a progress line on stderr, the summary on stdout.
pub async fn command(args: LoadArgs) -> Result<()> {
    let cfg = args.validate()?;
    let kube = if args.watch_hpa {
        Some(super::up::kind_client().await?)
    } else {
        None
    };
    let namespace = args.namespace.clone().unwrap_or_else(|| {
        env_namespace(
            reqwest::Url::parse(&cfg.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .as_deref()
                .unwrap_or_default(),
        )
    });
    let hpa_line = Arc::new(Mutex::new(String::new()));
    let watcher = kube.map(|client| {
        let line = hpa_line.clone();
        super::cluster::watch_hpas(&client, &namespace, move |h| {
            if let Ok(mut l) = line.lock() {
                *l = format!("  hpa {}/{} (desired {})", h.current, h.max, h.desired);
            }
        })
    });
    let summary = run(&cfg, |t, s| {
        let hpa = hpa_line.lock().map(|l| l.clone()).unwrap_or_default();
        eprintln!(
            "{:>4.0}s  requests {:>8}  errors {:>6}  p50 {:>7.1} ms  p99 {:>7.1} ms{hpa}",
            t.as_secs_f64(),
            s.requests,
            s.errors,
            s.p50_ms,
            s.p99_ms
        );
    })
    .await?;
    if let Some(w) = watcher {
        w.abort();
    }
    let causes = describe_causes(&summary.causes);
    println!(
        "{} requests in {}, {:.0} req/s, {} errors{}, p50 {:.1} ms, p99 {:.1} ms",
        summary.requests,
        humantime::format_duration(cfg.duration),
        summary.rate,
        summary.errors,
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({causes})")
        },
        summary.p50_ms,
        summary.p99_ms
    );
    if summary.errors > 0 {
        return Err(Error::LoadErrors {
            failed: summary.errors,
            causes,
        });
    }
    Ok(())
}

/// `refused ×3, 503 ×1`: the causes, most frequent first.
pub fn describe_causes(causes: &std::collections::BTreeMap<String, usize>) -> String {
    let mut by_count: Vec<_> = causes.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    by_count
        .iter()
        .map(|(cause, n)| format!("{cause} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod cause_tests {
    use super::*;

    #[test]
    fn causes_are_listed_most_frequent_first() {
        let causes = [("503", 1), ("refused", 3), ("reset", 1)]
            .into_iter()
            .map(|(c, n)| (c.to_string(), n))
            .collect();
        assert_eq!(describe_causes(&causes), "refused ×3, 503 ×1, reset ×1");
        assert_eq!(describe_causes(&Default::default()), "");
    }

    #[test]
    fn the_hpa_is_watched_in_the_namespace_of_the_urls_environment() {
        assert_eq!(
            env_namespace("prod.metrics-app.localtest.me"),
            "metrics-app-prod"
        );
        assert_eq!(
            env_namespace("staging.metrics-app.localtest.me"),
            "metrics-app-staging"
        );
        assert_eq!(env_namespace("metrics-app.localtest.me"), "metrics-app-dev");
        assert_eq!(
            env_namespace("a.b.metrics-app.localtest.me"),
            "metrics-app-dev"
        );
        assert_eq!(env_namespace("127.0.0.1"), "metrics-app-dev");
    }
}
