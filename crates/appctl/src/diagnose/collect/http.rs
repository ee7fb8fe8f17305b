//! HTTP evidence: sends the probe requests and records each one as a [`Sample`].
//!
//! One request at a time by default, so the order of requests (and of counter values) means
//! something. A request that exceeds the per-request timeout is recorded as `timeout` with the
//! timeout as its latency: a 21-second pattern shows up without waiting 21 seconds. After every
//! sample the caller's `observe` decides whether the verdict is already certain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::diagnose::model::{Outcome, Sample};

/// What to send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Target URL.
    pub url: String,
    /// Most requests.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Probe time limit: no request starts after it.
    pub max_time: Duration,
    /// Response header naming the answering instance.
    pub instance_header: String,
    /// Pause before each request after the first (per worker), to watch a service over time.
    pub interval: Duration,
}

/// Why a probe could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Runs the probe. `observe` sees all samples so far (in request order) after each one and
/// returns true to stop early.
pub async fn run(
    plan: &Plan,
    mut observe: impl FnMut(&[Sample]) -> bool,
) -> Result<Vec<Sample>, ProbeError> {
    let client = crate::http()
        .timeout(plan.timeout)
        .pool_max_idle_per_host(plan.concurrency)
        // Measure the target itself, not a proxy configured in the environment.
        .no_proxy()
        .build()?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..plan.concurrency {
        let (client, next, stop, tx, plan) = (
            client.clone(),
            next.clone(),
            stop.clone(),
            tx.clone(),
            plan.clone(),
        );
        tokio::spawn(async move {
            loop {
                if stop.load(Ordering::SeqCst) || started.elapsed() >= plan.max_time {
                    break;
                }
                let ordinal = next.fetch_add(1, Ordering::SeqCst);
                if ordinal > plan.requests {
                    break;
                }
                if ordinal > plan.concurrency && !plan.interval.is_zero() {
                    tokio::time::sleep(plan.interval).await;
                }
                let sample = one(&client, &plan, ordinal, started).await;
                // Wait for the verdict on this sample before sending another: a fast-failing
                // target would otherwise outrun the analysis.
                let (go_on, decided) = tokio::sync::oneshot::channel();
                if tx.send((sample, go_on)).is_err() || !decided.await.unwrap_or(false) {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut samples: Vec<Sample> = Vec::new();
    while let Some((sample, go_on)) = rx.recv().await {
        let at = samples.partition_point(|s| s.ordinal < sample.ordinal);
        samples.insert(at, sample);
        if !stop.load(Ordering::SeqCst) && observe(&samples) {
            stop.store(true, Ordering::SeqCst);
        }
        let _ = go_on.send(!stop.load(Ordering::SeqCst));
    }
    Ok(samples)
}

/// Sends request number `ordinal` and records how it went.
async fn one(client: &reqwest::Client, plan: &Plan, ordinal: usize, t0: Instant) -> Sample {
    let start = Instant::now();
    let start_ms = start.duration_since(t0).as_secs_f64() * 1000.0;
    let result = async {
        let response = client.get(&plan.url).send().await?;
        let status = response.status().as_u16();
        let instance = response
            .headers()
            .get(plan.instance_header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, instance, body))
    }
    .await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok((code, instance, body)) => Sample {
            ordinal,
            start_ms,
            latency_ms,
            outcome: Outcome::Status { code },
            counter: parse_counter(&body),
            instance,
        },
        Err(e) => Sample {
            ordinal,
            start_ms,
            latency_ms: if e.is_timeout() {
                plan.timeout.as_secs_f64() * 1000.0
            } else {
                latency_ms
            },
            outcome: classify(&e),
            counter: None,
            instance: None,
        },
    }
}

/// `N` from a body containing `Counter value: N`.
pub fn parse_counter(body: &str) -> Option<u64> {
    let rest = &body[body.find("Counter value:")? + "Counter value:".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Why a request got no HTTP answer — timeout, refused, reset, DNS, TLS or another error —
/// from the client error and its chain of causes. `appctl load` uses it too, so both commands
/// name failures the same way.
pub fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_timeout() {
        return Outcome::Timeout;
    }
    classify_chain(e)
}

/// [`classify`] over any error chain (the part that does not need a `reqwest::Error`).
pub(crate) fn classify_chain(e: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut text = String::new();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Outcome::Refused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Outcome::Reset;
                }
                K::TimedOut => return Outcome::Timeout,
                _ => {}
            }
        }
        text.push_str(&s.to_string());
        text.push_str(": ");
        source = s.source();
    }
    let message = text.trim_end_matches(": ").to_string();
    let lower = message.to_lowercase();
    // hyper-util names resolver failures "dns error"; getaddrinfo says "failed to lookup
    // address information" (glibc) or "name or service not known".
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no address associated")
    {
        Outcome::Dns { message }
    } else if lower.contains("connection refused") {
        Outcome::Refused
    } else if lower.contains("reset") || lower.contains("closed before") {
        Outcome::Reset
    } else if lower.contains("tls")
        || lower.contains("certificate")
        || lower.contains("handshake")
        || lower.contains("scheme is not http")
    {
        Outcome::Tls { message }
    } else if lower.contains("timed out") {
        Outcome::Timeout
    } else {
        Outcome::Error { message }
    }
}

/// Failed requests by cause, most frequent first, each with one example explanation:
/// `refused ×3: connection refused: …`. Empty when every request got an HTTP answer.
pub fn failure_causes(outcomes: impl IntoIterator<Item = Outcome>) -> Vec<(String, usize, String)> {
    let mut by: Vec<(String, usize, String)> = Vec::new();
    for o in outcomes {
        let Some(why) = o.explain() else { continue };
        let label = o.label();
        match by.iter_mut().find(|(l, _, _)| *l == label) {
            Some(entry) => entry.1 += 1,
            None => by.push((label, 1, why)),
        }
    }
    by.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_values_are_read_from_the_body() {
        assert_eq!(parse_counter("Counter value: 42"), Some(42));
        assert_eq!(parse_counter("Counter value: 7\n"), Some(7));
        assert_eq!(parse_counter("Metrics Dashboard"), None);
        assert_eq!(parse_counter("Counter value: x"), None);
        assert_eq!(
            parse_counter("Counter value: 99999999999999999999999"),
            None
        );
    }

    /// An error whose message is fixed and whose cause is another error, like hyper's.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<std::io::Error>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn failures_are_named_by_their_cause() {
        use std::io::{Error, ErrorKind};
        let refused = Wrapped(
            "client error (Connect)",
            Some(ErrorKind::ConnectionRefused.into()),
        );
        assert_eq!(classify_chain(&refused), Outcome::Refused);
        let reset = Wrapped(
            "error sending request",
            Some(ErrorKind::ConnectionReset.into()),
        );
        assert_eq!(classify_chain(&reset), Outcome::Reset);
        let dns = Wrapped(
            "dns error",
            Some(Error::other(
                "failed to lookup address information: Name or service not known",
            )),
        );
        assert_eq!(classify_chain(&dns).label(), "dns");
        let tls = Wrapped("invalid peer certificate: UnknownIssuer", None);
        assert_eq!(classify_chain(&tls).label(), "tls");
        let other = Wrapped("builder error", None);
        assert_eq!(classify_chain(&other).label(), "error");
    }

    #[test]
    fn failure_causes_are_counted_most_frequent_first() {
        let causes = failure_causes([
            Outcome::Status { code: 200 },
            Outcome::Timeout,
            Outcome::Refused,
            Outcome::Refused,
        ]);
        assert_eq!(causes.len(), 2);
        assert_eq!((causes[0].0.as_str(), causes[0].1), ("refused", 2));
        assert!(causes[0].2.contains("connection refused"));
        assert_eq!((causes[1].0.as_str(), causes[1].1), ("timeout", 1));
    }
}
