//! A bounded load generator: `workers` tasks each sending `GET` requests one after another,
//! paced, until a request budget, a time budget or a stop signal ends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

/// The outcome of one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// HTTP status, `None` on a transport error.
    pub status: Option<u16>,
    /// The counter value, for a `200 Counter value: N`.
    pub value: Option<u64>,
    /// `X-Instance` of the answer.
    pub instance: Option<String>,
    /// The transport error, if any.
    pub error: Option<String>,
    /// When the request was sent, relative to the start of the load.
    pub sent_at: Duration,
    /// When its answer (or error) came, on the same clock.
    pub answered_at: Duration,
}

/// Limits of a load run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent workers.
    pub workers: usize,
    /// Pause between two requests of one worker.
    pub pace: Duration,
    /// Total request budget.
    pub max_requests: usize,
    /// Time budget.
    pub max_duration: Duration,
}

/// A running load; [`Running::stop`] ends it and returns the outcomes.
pub struct Running {
    stop: Arc<AtomicBool>,
    /// Requests answered so far (any outcome).
    answered: Arc<AtomicUsize>,
    handles: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

pub use testkit::http::counter_value;

impl Load {
    /// Starts the load against `url`.
    pub fn start(&self, url: &str) -> Result<Running> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(AtomicUsize::new(self.max_requests));
        let answered = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..self.workers {
            let (client, url, stop, budget, answered) = (
                client.clone(),
                url.to_string(),
                stop.clone(),
                budget.clone(),
                answered.clone(),
            );
            let (pace, max) = (self.pace, self.max_duration);
            handles.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.load(Ordering::SeqCst)
                    && started.elapsed() < max
                    && budget
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                        .is_ok()
                {
                    out.push(one(&client, &url, started).await);
                    answered.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(pace).await;
                }
                out
            }));
        }
        Ok(Running {
            stop,
            answered,
            handles,
        })
    }
}

async fn one(client: &reqwest::Client, url: &str, started: Instant) -> Outcome {
    let sent_at = started.elapsed();
    match client.get(url).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let instance = r
                .headers()
                .get("x-instance")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = r.text().await.unwrap_or_default();
            Outcome {
                status: Some(status),
                value: if status == 200 {
                    counter_value(&body)
                } else {
                    None
                },
                instance,
                error: None,
                sent_at,
                answered_at: started.elapsed(),
            }
        }
        Err(e) => Outcome {
            status: None,
            value: None,
            instance: None,
            error: Some(e.to_string()),
            sent_at,
            answered_at: started.elapsed(),
        },
    }
}

impl Running {
    /// Waits until `more` requests beyond those answered so far have been answered, at most
    /// `deadline`: "the load has been running a while", measured in requests, not in time.
    pub async fn wait_for_answers(&self, more: usize, deadline: Duration) -> Result<()> {
        let target = self.answered.load(Ordering::SeqCst) + more;
        let until = Instant::now() + deadline;
        while self.answered.load(Ordering::SeqCst) < target {
            if Instant::now() > until {
                anyhow::bail!(
                    "only {} of {target} requests answered within {deadline:?}",
                    self.answered.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Stops the workers after their current request and collects every outcome.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for h in self.handles {
            if let Ok(o) = h.await {
                all.extend(o);
            }
        }
        all.sort_by_key(|o| o.sent_at);
        all
    }
}

/// Counter values of the successful outcomes, sorted.
pub fn sorted_values(outcomes: &[Outcome]) -> Vec<u64> {
    let mut v: Vec<u64> = outcomes.iter().filter_map(|o| o.value).collect();
    v.sort_unstable();
    v
}

/// The values that appear more than once in a sorted list.
pub fn duplicates(sorted: &[u64]) -> Vec<u64> {
    sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect()
}
