//! Metrics evidence (`--metrics URL`): the Prometheus exposition scraped before and after the
//! probe, parsed with a real parser, compared: resident memory per request, a restart (the
//! process start time changed), fault modes switched on.

use serde::Serialize;

use super::model::{Finding, Kind, Severity};
use super::process::{is_leak, memory_growth};

/// What one scrape says.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reading {
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<f64>,
    /// `process_start_time_seconds`.
    pub start_time_seconds: Option<f64>,
    /// `metrics_app_leaked_bytes`.
    pub leaked_bytes: Option<f64>,
    /// Modes with `metrics_app_fault_active == 1`.
    pub fault_modes: Vec<String>,
    /// Series in the scrape.
    pub series: usize,
}

/// Parses a text exposition; an error names what the parser rejected.
pub fn parse(text: &str) -> Result<Reading, String> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("not a Prometheus exposition: {e}"))?;
    let mut r = Reading {
        series: scrape.samples.len(),
        ..Reading::default()
    };
    for s in &scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        match s.metric.as_str() {
            "process_resident_memory_bytes" => r.rss_bytes = Some(value),
            "process_start_time_seconds" => r.start_time_seconds = Some(value),
            "metrics_app_leaked_bytes" => r.leaked_bytes = Some(value),
            "metrics_app_fault_active" if value >= 1.0 => {
                if let Some(mode) = s.labels.get("mode") {
                    r.fault_modes.push(mode.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Judges two readings `requests` apart (`after` is `None` when the endpoint no longer
/// answered): `restarts` and `memory-growth`.
pub fn findings(before: &Reading, after: Option<&Reading>, requests: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(after) = after else {
        return out;
    };
    if let (Some(a), Some(b)) = (before.start_time_seconds, after.start_time_seconds)
        && (a - b).abs() >= 1.0
    {
        out.push(
            Finding::new(
                Kind::Restarts,
                Severity::High,
                "the process restarted during the probe (its start time changed)",
            )
            .evidence(format!(
                "process_start_time_seconds {a:.0} before, {b:.0} after"
            ))
            .cause_and_fix(
                "the process exited or was killed and started again (crash, OOM kill, liveness \
                 probe failure)",
                "find the termination reason (--kube shows it for pods) and the memory growth \
                 before it",
            )
            .detail("restarts", 1),
        );
        // Memory readings from two processes are not comparable.
        return out;
    }
    // Resident memory is sampled by the target on an interval and may lag; memory the target
    // itself reports as retained (metrics-app's leak fault) is current. Take the larger growth.
    let rss = before.rss_bytes.zip(after.rss_bytes);
    let retained = before.leaked_bytes.zip(after.leaked_bytes);
    let growth = |p: Option<(f64, f64)>| p.map_or(0.0, |(a, b)| b - a);
    let pair = if growth(retained) > growth(rss) {
        retained.map(|(a, b)| {
            let base = before.rss_bytes.unwrap_or(0.0);
            (base + a, base + b)
        })
    } else {
        rss
    };
    if let Some((a, b)) = pair {
        let (a, b) = (a.max(0.0) as u64, b.max(0.0) as u64);
        if is_leak(b.saturating_sub(a), requests) {
            let mut f = memory_growth("metrics endpoint", a, b, requests);
            if !after.fault_modes.is_empty() {
                f = f.evidence(format!(
                    "fault modes switched on: {}",
                    after.fault_modes.join(", ")
                ));
            }
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE process_resident_memory_bytes gauge\n\
        process_resident_memory_bytes 10485760\n\
        # TYPE process_start_time_seconds gauge\n\
        process_start_time_seconds 1700000000\n\
        # TYPE metrics_app_fault_active gauge\n\
        metrics_app_fault_active{mode=\"leak\"} 1\n\
        metrics_app_fault_active{mode=\"slow-even\"} 0\n";

    #[test]
    fn parses_the_readings_it_needs() {
        let r = parse(BEFORE).expect("parse");
        assert_eq!(r.rss_bytes, Some(10_485_760.0));
        assert_eq!(r.fault_modes, vec!["leak".to_string()]);
    }

    #[test]
    fn growth_and_restart_are_found_and_steady_state_is_quiet() {
        let before = parse(BEFORE).expect("parse");
        let grown = Reading {
            rss_bytes: Some(10_485_760.0 + 500.0 * 1024.0 * 1024.0),
            ..before.clone()
        };
        let f = findings(&before, Some(&grown), 5);
        assert_eq!(f[0].kind, Kind::MemoryGrowth);
        let restarted = Reading {
            start_time_seconds: Some(1_700_000_100.0),
            ..before.clone()
        };
        assert_eq!(
            findings(&before, Some(&restarted), 5)[0].kind,
            Kind::Restarts
        );
        assert!(findings(&before, Some(&before), 5).is_empty());
        assert!(findings(&before, None, 5).is_empty());
    }
}
