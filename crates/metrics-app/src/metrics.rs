//! Prometheus metrics: one registry, grouped metric families, and the exposition encoder.
//!
//! Label values are bounded by construction: `route` is the route template that answered (or
//! `unmatched`), `listener` is `public` or `management`, `method` from a fixed list, `status`
//! from the status code, `store` and `operation` from fixed strings. Nothing a client sends can
//! create a new series.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::faults::Faults;
use crate::process_stats::ProcessStats;

/// Latency buckets for HTTP requests, in seconds: sub-millisecond to the 21 s of the slow bug.
const HTTP_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
];
/// Latency buckets for store operations, in seconds.
const STORE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: &'static str,
    pub method: Method,
    pub status: u16,
}

/// An HTTP method as a bounded label value: the common ones by name, anything else `OTHER`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Method(&'static str);

impl From<&http::Method> for Method {
    fn from(m: &http::Method) -> Self {
        const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
        let name = m.as_str();
        Self(KNOWN.into_iter().find(|k| *k == name).unwrap_or("OTHER"))
    }
}

impl EncodeLabelValue for Method {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        self.0.encode(encoder)
    }
}

/// Label of the per-listener connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// Labels of the store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: &'static str,
    pub operation: &'static str,
}

/// Handles of the metrics that change at run time (their help is in [`Metrics::new`]), and the
/// registry that holds every metric. Cheap to clone: the handles share their values.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub http_in_flight: Gauge,
    pub counter_value: Gauge,
    pub store_duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    pub store_errors: Family<StoreLabels, Counter>,
    pub ready: Gauge,
    pub draining: Gauge,
    pub leaked_bytes: Gauge<u64, AtomicU64>,
    pub fault_children_started: Counter,
    pub connections_shed: Family<ListenerLabels, Counter>,
    pub admin_rate_limited: Counter,
    registry: Arc<Registry>,
}

/// Registers each metric and hands back the handle that updates it; the registry keeps a
/// clone, which shares its values. The exposition lists metrics in registration order.
#[derive(Default)]
struct Registrar(Registry);

impl Registrar {
    fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        self.add_with(name, help, M::default())
    }

    fn add_with<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

impl Metrics {
    /// Creates and registers every metric. `process` is read at each scrape.
    pub fn new(faults: &Faults, process: Arc<ProcessStats>) -> Self {
        let mut r = Registrar::default();
        r.0.register_collector(Box::new(process));
        // Set once here and never changed, so no handle is kept.
        let build_info: Family<[(&str, &str); 2], Gauge> = r.add(
            "metrics_app_build_info",
            "Build identity; the value is always 1",
        );
        let version = env!("CARGO_PKG_VERSION");
        let commit = env!("METRICS_APP_GIT_COMMIT");
        build_info
            .get_or_create(&[("version", version), ("commit", commit)])
            .set(1);
        let fault_active: Family<[(&str, &str); 1], Gauge> = r.add(
            "metrics_app_fault_active",
            "1 when the fault mode reproducing a historical bug is switched on",
        );
        for (mode, on) in faults.modes() {
            fault_active
                .get_or_create(&[("mode", mode)])
                .set(i64::from(on));
        }
        Self {
            http_requests: r.add(
                "http_requests",
                "HTTP requests answered, by route, method and status",
            ),
            http_duration: r.add_with(
                "http_request_duration_seconds",
                "HTTP request latency in seconds, by route, method and status",
                Family::new_with_constructor(|| Histogram::new(HTTP_BUCKETS)),
            ),
            http_in_flight: r.add("http_requests_in_flight", "HTTP requests being served"),
            counter_value: r.add(
                "metrics_app_last_issued_value",
                "Last counter value this instance handed out",
            ),
            store_duration: r.add_with(
                "metrics_app_store_operation_duration_seconds",
                "Counter store call latency in seconds, by store and operation",
                Family::new_with_constructor(|| Histogram::new(STORE_BUCKETS)),
            ),
            store_errors: r.add(
                "metrics_app_store_errors",
                "Failed counter store calls, by store and operation",
            ),
            ready: r.add(
                "metrics_app_ready",
                "1 when the last readiness check passed",
            ),
            draining: r.add("metrics_app_draining", "1 once graceful shutdown has begun"),
            leaked_bytes: r.add(
                "metrics_app_leaked_bytes",
                "Memory retained by the leak fault mode, in bytes",
            ),
            fault_children_started: r.add(
                "metrics_app_fault_child_processes_started",
                "CPU-burning child processes started by the slow-even fault mode",
            ),
            connections_shed: r.add(
                "metrics_app_connections_shed",
                "Connections answered 503 and closed because the listener's connection budget \
                 was used up",
            ),
            admin_rate_limited: r.add(
                "metrics_app_admin_rate_limited",
                "Admin requests refused with 429 because their client address sent too many",
            ),
            registry: Arc::new(r.0),
        }
    }

    /// Renders the exposition in the requested format.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(match format {
            Format::OpenMetrics => out,
            Format::PrometheusText => openmetrics_to_prometheus_text(&out),
        })
    }
}

/// Exposition formats served on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, which Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4, for everything else (curl, promtool, older
    /// scrapers).
    PrometheusText,
}

impl Format {
    /// Chooses by the `Accept` header, as Prometheus negotiates.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The two text formats differ, for what this registry emits, only in counter family names
/// (OpenMetrics names the family without `_total`, the samples with it), `# UNIT` lines and
/// the closing `# EOF`.
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn methods_outside_the_fixed_list_are_labelled_other() {
        let label = |m: &str| Method::from(&http::Method::from_bytes(m.as_bytes()).unwrap()).0;
        for known in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(label(known), known);
        }
        for other in ["CONNECT", "TRACE", "PROPFIND", "get"] {
            assert_eq!(label(other), "OTHER", "{other}");
        }
    }

    #[test]
    fn counter_families_are_renamed_and_openmetrics_markers_dropped() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total 3\n\
                  # HELP g A gauge.\n# TYPE g gauge\n# UNIT g bytes\ng 1\n# EOF\n";
        let text = openmetrics_to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_classic_text() {
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::from_accept(None), Format::PrometheusText);
    }
}
