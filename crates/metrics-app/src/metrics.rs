//! Prometheus metrics: one registry, grouped metric families, and the exposition encoder.
//!
//! Label values are bounded by construction: `route` is the route template that answered (or
//! `unmatched`), `listener` is `public` or `management`, `method` from a fixed list, `status` from the status code, `store` and
//! `operation` from enums. Nothing a client sends can create a new series.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::faults::Faults;
use crate::process_stats::ProcessStats;

/// Latency buckets for HTTP requests, in seconds: sub-millisecond to the 21 s of the slow bug.
pub const HTTP_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
];
/// Latency buckets for store operations, in seconds.
pub const STORE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Matched route template, or `unmatched`.
    pub route: &'static str,
    /// Request method, from a fixed list.
    pub method: Method,
    /// Response status code.
    pub status: u16,
}

/// HTTP methods as a bounded label value; anything unusual is `OTHER`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs, clippy::upper_case_acronyms)]
pub enum Method {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    PATCH,
    OPTIONS,
    OTHER,
}

impl From<&http::Method> for Method {
    fn from(m: &http::Method) -> Self {
        match *m {
            http::Method::GET => Self::GET,
            http::Method::HEAD => Self::HEAD,
            http::Method::POST => Self::POST,
            http::Method::PUT => Self::PUT,
            http::Method::DELETE => Self::DELETE,
            http::Method::PATCH => Self::PATCH,
            http::Method::OPTIONS => Self::OPTIONS,
            _ => Self::OTHER,
        }
    }
}

/// Label of the per-listener connection metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `public` or `management`.
    pub listener: &'static str,
}

/// Labels of the store metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `memory` or `redis`.
    pub store: &'static str,
    /// `increment`, `reset` or `ping`.
    pub operation: &'static str,
}

/// Labels of the build information metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// Label of the fault mode metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    mode: &'static str,
}

/// Every metric the service exports. Cheap to clone: the metric handles share their values.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Answered requests by route, method and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency by route, method and status.
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// Requests being served right now.
    pub http_in_flight: Gauge,
    /// Last counter value this instance handed out.
    pub counter_value: Gauge,
    /// Store call latency by store and operation.
    pub store_duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    /// Failed store calls by store and operation.
    pub store_errors: Family<StoreLabels, Counter>,
    /// 1 when the last readiness check passed.
    pub ready: Gauge,
    /// 1 once shutdown has begun.
    pub draining: Gauge,
    /// Bytes retained by the `leak` fault.
    pub leaked_bytes: Gauge<u64, AtomicU64>,
    /// Burner processes started by the `slow-even` fault.
    pub fault_children_started: Counter,
    /// Connections turned away because their listener's budget was used up.
    pub connections_shed: Family<ListenerLabels, Counter>,
    /// Admin requests refused because their client address made too many recently.
    pub admin_rate_limited: Counter,
    /// The registry all of the above are registered in.
    registry: Arc<Registry>,
}

impl Metrics {
    /// Creates and registers every metric. `process` is read at each scrape.
    pub fn new(faults: &Faults, process: Arc<ProcessStats>) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            http_requests.clone(),
        );
        let http_duration: Family<HttpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(http_duration_constructor as _);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency in seconds, by route, method and status",
            http_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            http_in_flight.clone(),
        );
        let counter_value = Gauge::default();
        registry.register(
            "metrics_app_last_issued_value",
            "Last counter value this instance handed out",
            counter_value.clone(),
        );
        let store_duration = Family::new_with_constructor(store_duration_constructor as _);
        registry.register(
            "metrics_app_store_operation_duration_seconds",
            "Counter store call latency in seconds, by store and operation",
            store_duration.clone(),
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "metrics_app_store_errors",
            "Failed counter store calls, by store and operation",
            store_errors.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "metrics_app_ready",
            "1 when the last readiness check passed",
            ready.clone(),
        );
        let draining = Gauge::default();
        registry.register(
            "metrics_app_draining",
            "1 once graceful shutdown has begun",
            draining.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("METRICS_APP_GIT_COMMIT"),
            })
            .set(1);
        registry.register(
            "metrics_app_build_info",
            "Build identity; the value is always 1",
            build_info,
        );
        let fault_active = Family::<FaultLabels, Gauge>::default();
        for (mode, on) in faults.modes() {
            fault_active
                .get_or_create(&FaultLabels { mode })
                .set(i64::from(on));
        }
        registry.register(
            "metrics_app_fault_active",
            "1 when the fault mode reproducing a historical bug is switched on",
            fault_active,
        );
        let leaked_bytes = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "metrics_app_leaked_bytes",
            "Memory retained by the leak fault mode, in bytes",
            leaked_bytes.clone(),
        );
        let fault_children_started = Counter::default();
        registry.register(
            "metrics_app_fault_child_processes_started",
            "CPU-burning child processes started by the slow-even fault mode",
            fault_children_started.clone(),
        );
        let connections_shed = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "metrics_app_connections_shed",
            "Connections answered 503 and closed because the listener's connection budget was used up",
            connections_shed.clone(),
        );
        let admin_rate_limited = Counter::default();
        registry.register(
            "metrics_app_admin_rate_limited",
            "Admin requests refused with 429 because their client address sent too many",
            admin_rate_limited.clone(),
        );
        registry.register_collector(Box::new(process));
        Self {
            http_requests,
            http_duration,
            http_in_flight,
            counter_value,
            store_duration,
            store_errors,
            ready,
            draining,
            leaked_bytes,
            fault_children_started,
            connections_shed,
            admin_rate_limited,
            registry: Arc::new(registry),
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

fn http_duration_constructor() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn store_duration_constructor() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
