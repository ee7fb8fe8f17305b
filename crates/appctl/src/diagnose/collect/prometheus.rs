//! History evidence (`--prometheus URL --since 1h`): what Prometheus recorded about the target
//! before this run, so a report can be written after the fact (the OOM kill an hour ago). Range
//! and instant queries over the Prometheus HTTP API: resident memory over the window, process
//! restarts (changes of `process_start_time_seconds`), the 5xx ratio and latency quantiles from
//! the request histogram, and — when kube-state-metrics is scraped — container restarts, last
//! termination reasons and memory limits. A query that fails or finds nothing is a note.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to ask.
#[derive(Debug, Clone)]
pub struct HistoryPlan {
    /// Prometheus base URL, e.g. http://127.0.0.1:9090.
    pub url: String,
    /// How far back.
    pub since: Duration,
    /// Label matchers selecting the target's series, e.g. `job="metrics-app"`.
    pub matchers: String,
    /// Namespace for kube-state-metrics series, when known.
    pub namespace: Option<String>,
    /// Per-query timeout.
    pub timeout: Duration,
}

/// One series of a range query: its labels and (unix seconds, value) points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its points.
    pub points: Vec<(f64, f64)>,
}

/// What Prometheus says about the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// The query window, seconds.
    pub window_seconds: f64,
    /// Label matchers used.
    pub matchers: String,
    /// `process_resident_memory_bytes` per instance.
    pub memory: Vec<Series>,
    /// `process_start_time_seconds` per instance.
    pub start_times: Vec<Series>,
    /// Share of requests answered with 5xx over the window.
    pub error_ratio: Option<f64>,
    /// Requests over the window.
    pub requests: Option<f64>,
    /// Median latency over the window, from the histogram, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency over the window, from the histogram, ms.
    pub p99_ms: Option<f64>,
    /// kube-state-metrics: (pod/container, restarts in the window).
    pub container_restarts: Vec<(String, f64)>,
    /// kube-state-metrics: (pod/container, reason) of last terminations.
    pub terminations: Vec<(String, String)>,
    /// kube-state-metrics: (pod/container, memory limit bytes).
    pub memory_limits: Vec<(String, f64)>,
    /// What could not be asked or found.
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(default)]
    result: Vec<ApiSeries>,
}

#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// A query that could not be answered, naming the query and keeping the cause.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The HTTP request failed.
    #[error("Prometheus at {url} did not answer {query:?}")]
    Http {
        /// Base URL.
        url: String,
        /// The PromQL.
        query: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with an error.
    #[error("Prometheus rejected {query:?}: {message}")]
    Rejected {
        /// The PromQL.
        query: String,
        /// Its error message.
        message: String,
    },
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Vec<ApiSeries>, QueryError> {
        let http_err = |source| QueryError::Http {
            url: self.url.clone(),
            query: query.to_string(),
            source,
        };
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.url.trim_end_matches('/')))
            .map_err(|e| QueryError::Rejected {
                query: query.to_string(),
                message: format!("bad URL: {e}"),
            })?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let text = self
            .http
            .get(url)
            .send()
            .await
            .map_err(http_err)?
            .text()
            .await
            .map_err(http_err)?;
        let resp: ApiResponse = serde_json::from_str(&text).map_err(|e| QueryError::Rejected {
            query: query.to_string(),
            message: format!("not a Prometheus API answer: {e}"),
        })?;
        if resp.status != "success" {
            return Err(QueryError::Rejected {
                query: query.to_string(),
                message: resp.error.unwrap_or_default(),
            });
        }
        Ok(resp.data.map(|d| d.result).unwrap_or_default())
    }

    async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, QueryError> {
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step:.3}")),
        ];
        Ok(self
            .get("/api/v1/query_range", &params, query)
            .await?
            .into_iter()
            .map(|s| Series {
                labels: s.metric,
                points: s
                    .values
                    .into_iter()
                    .filter_map(|(t, v)| Some((t, v.parse().ok()?)))
                    .collect(),
            })
            .collect())
    }

    async fn instant(
        &self,
        query: &str,
        at: f64,
    ) -> Result<Vec<(std::collections::BTreeMap<String, String>, f64)>, QueryError> {
        let params = [("query", query.to_string()), ("time", format!("{at:.3}"))];
        Ok(self
            .get("/api/v1/query", &params, query)
            .await?
            .into_iter()
            .filter_map(|s| {
                let v: f64 = s.value?.1.parse().ok()?;
                v.is_finite().then_some((s.metric, v))
            })
            .collect())
    }
}

fn pod_container(l: &std::collections::BTreeMap<String, String>) -> String {
    format!(
        "{}/{}",
        l.get("pod").map_or("?", String::as_str),
        l.get("container").map_or("?", String::as_str)
    )
}

/// Asks Prometheus about the window ending now.
pub async fn collect(plan: &HistoryPlan) -> History {
    let mut h = History {
        window_seconds: plan.since.as_secs_f64(),
        matchers: plan.matchers.clone(),
        ..History::default()
    };
    let http = match crate::http().timeout(plan.timeout).no_proxy().build() {
        Ok(c) => c,
        Err(e) => {
            h.notes
                .push(format!("history: cannot build an HTTP client: {e}"));
            return h;
        }
    };
    let c = Client {
        http,
        url: plan.url.clone(),
    };
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let since = plan.since.as_secs_f64();
    let start = end - since;
    // About 240 points per series, never finer than a second.
    let step = (since / 240.0).max(1.0);
    let window = format!("{}s", since.round() as u64);
    let m = &plan.matchers;
    let note = |what: &str, e: QueryError| h_note(what, e);
    // The highest reading within each step, so a peak just before an OOM kill is not skipped
    // between two step points.
    let peak = format!("{}s", step.ceil() as u64 + 1);
    match c
        .range(
            &format!("max_over_time(process_resident_memory_bytes{{{m}}}[{peak}])"),
            start,
            end,
            step,
        )
        .await
    {
        Ok(s) if s.is_empty() => h.notes.push(format!(
            "history: no process_resident_memory_bytes{{{m}}} in the last {window} (check --prom-match)"
        )),
        Ok(s) => h.memory = s,
        Err(e) => h.notes.push(note("memory", e)),
    }
    match c
        .range(
            &format!("process_start_time_seconds{{{m}}}"),
            start,
            end,
            step,
        )
        .await
    {
        Ok(s) => h.start_times = s,
        Err(e) => h.notes.push(note("restarts", e)),
    }
    let total = format!("sum(increase(http_requests_total{{{m}}}[{window}]))");
    let errors = format!("sum(increase(http_requests_total{{{m},status=~\"5..\"}}[{window}]))");
    match (c.instant(&total, end).await, c.instant(&errors, end).await) {
        (Ok(t), Ok(e)) => {
            let t = t.first().map(|x| x.1);
            h.requests = t;
            if let Some(t) = t.filter(|t| *t > 0.0) {
                h.error_ratio = Some(e.first().map_or(0.0, |x| x.1) / t);
            }
        }
        (Err(e), _) | (_, Err(e)) => h.notes.push(note("error ratio", e)),
    }
    for (q, slot) in [(0.5, 0), (0.99, 1)] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (increase(http_request_duration_seconds_bucket{{{m}}}[{window}])))"
        );
        match c.instant(&query, end).await {
            Ok(v) => {
                let ms = v.first().map(|x| x.1 * 1000.0);
                if slot == 0 {
                    h.p50_ms = ms;
                } else {
                    h.p99_ms = ms;
                }
            }
            Err(e) => h.notes.push(note("latency", e)),
        }
    }
    let ns = plan
        .namespace
        .as_ref()
        .map_or(String::new(), |n| format!("namespace=\"{n}\""));
    let ksm = [
        format!("increase(kube_pod_container_status_restarts_total{{{ns}}}[{window}]) > 0"),
        format!("kube_pod_container_status_last_terminated_reason{{{ns}}} == 1"),
        format!(
            "kube_pod_container_resource_limits{{{ns}{}resource=\"memory\"}}",
            if ns.is_empty() { "" } else { "," }
        ),
    ];
    let mut found_ksm = false;
    for (i, q) in ksm.iter().enumerate() {
        match c.instant(q, end).await {
            Ok(v) => {
                found_ksm |= !v.is_empty();
                for (l, x) in v {
                    match i {
                        0 => h.container_restarts.push((pod_container(&l), x)),
                        1 => h.terminations.push((
                            pod_container(&l),
                            l.get("reason").cloned().unwrap_or_default(),
                        )),
                        _ => h.memory_limits.push((pod_container(&l), x)),
                    }
                }
            }
            Err(e) => h.notes.push(note("kube-state-metrics", e)),
        }
    }
    if !found_ksm {
        h.notes.push(
            "history: no kube-state-metrics series (kube_pod_container_*): restarts, \
             termination reasons and limits of containers are unknown"
                .into(),
        );
    }
    h
}

fn h_note(what: &str, e: QueryError) -> String {
    let mut text = format!("history ({what}): {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}
