//! Prometheus metrics: one registry, grouped metric families, the process collector and the
//! exposition encoder.
//!
//! Label values are bounded by construction: `route` is the route template that answered (or
//! `unmatched`), `listener` is `public` or `management`, `method` from a fixed list, `status`
//! from the status code, `store` and `operation` from fixed strings. Nothing a client sends can
//! create a new series.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::faults::Faults;

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
pub(crate) struct HttpLabels {
    pub(crate) route: &'static str,
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

/// An HTTP method as a bounded label value: the common ones by name, anything else `OTHER`.
pub(crate) fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let name = method.as_str();
    KNOWN.into_iter().find(|k| *k == name).unwrap_or("OTHER")
}

/// Labels of the store metrics: `store` and `operation`.
pub(crate) type StoreLabels = [(&'static str, &'static str); 2];

/// Handles of the metrics that change at run time (their help is in [`Metrics::new`]), and the
/// registry that holds every metric. Cheap to clone: the handles share their values.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) http_requests: Family<HttpLabels, Counter>,
    pub(crate) http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub(crate) http_in_flight: Gauge,
    pub(crate) counter_value: Gauge,
    pub(crate) store_duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    pub(crate) store_errors: Family<StoreLabels, Counter>,
    pub(crate) ready: Gauge,
    pub(crate) draining: Gauge,
    pub(crate) leaked_bytes: Gauge<u64, AtomicU64>,
    pub(crate) fault_children_started: Counter,
    /// By `listener`.
    pub(crate) connections_shed: Family<[(&'static str, &'static str); 1], Counter>,
    pub(crate) admin_rate_limited: Counter,
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
    /// Creates and registers every metric.
    pub(crate) fn new(faults: &Faults) -> Self {
        let mut r = Registrar::default();
        r.0.register_collector(Box::new(ProcessCollector));
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

    /// Renders the exposition as the scraper's `Accept` header asks, as Prometheus negotiates:
    /// OpenMetrics 1.0 text for Prometheus, which asks for it first, and the classic text
    /// format 0.0.4 for everything else (curl, promtool, older scrapers). Returns the
    /// `Content-Type` and the body.
    pub(crate) fn encode(
        &self,
        accept: Option<&str>,
    ) -> Result<(&'static str, String), std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(match accept {
            Some(a) if a.contains("application/openmetrics-text") => (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                out,
            ),
            _ => (
                "text/plain; version=0.0.4; charset=utf-8",
                openmetrics_to_prometheus_text(&out),
            ),
        })
    }
}

/// The standard process metrics (`process_*`), read from the system at each scrape, as
/// Prometheus's own client libraries do: nothing runs between scrapes, and only the scrape
/// waits for the reads (a few files under `/proc/self` on Linux). A figure the platform cannot
/// give is left out rather than shown as zero.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let m = metrics_process::collector::collect();
        if m.resident_memory_bytes.is_none() {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!("cannot read process statistics: no process_* metrics")
            });
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                m.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                m.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                m.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                m.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                m.threads,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                m.start_time_seconds,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        if let Some(seconds) = m.cpu_seconds_total {
            let cpu = ConstCounter::new(seconds);
            let help = "Total user and system CPU time spent in seconds";
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                help,
                None,
                cpu.metric_type(),
            )?)?;
        }
        Ok(())
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
        let label = |m: &str| method_label(&http::Method::from_bytes(m.as_bytes()).unwrap());
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
        let metrics = Metrics::new(&Faults::default());
        let prometheus =
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        let (content_type, body) = metrics.encode(Some(prometheus)).unwrap();
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.ends_with("# EOF\n"), "{body}");
        for accept in [Some("*/*"), None] {
            let (content_type, body) = metrics.encode(accept).unwrap();
            assert!(content_type.starts_with("text/plain; version=0.0.4"));
            assert!(!body.contains("# EOF"), "{body}");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn process_figures_are_read_afresh_at_each_scrape() {
        let metrics = Metrics::new(&Faults::default());
        let scrape = || metrics.encode(None).unwrap().1;
        let value = |body: &str, name: &str| -> f64 {
            let line = body
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")));
            line.and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from {body}"))
        };
        let before = scrape();
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
        ] {
            assert!(value(&before, name) >= 0.0, "{name} in {before}");
        }
        assert!(value(&before, "process_resident_memory_bytes") > 100.0 * 1024.0);
        assert!(value(&before, "process_threads") >= 1.0);
        assert!(value(&before, "process_open_fds") >= 1.0);
        assert!(value(&before, "process_cpu_seconds_total") >= 0.0);
        let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
        let started = value(&before, "process_start_time_seconds");
        assert!(
            started <= now && now - started < 3600.0,
            "started {started}, now {now}"
        );
        // Memory made resident after one scrape of the same registry shows in the next.
        let kept = vec![0xA5u8; 64 << 20];
        let after = scrape();
        std::hint::black_box(&kept);
        let grown = value(&after, "process_resident_memory_bytes")
            - value(&before, "process_resident_memory_bytes");
        assert!(grown > 32.0 * 1024.0 * 1024.0, "RSS grew by {grown} bytes");
    }
}
