//! Judges what Prometheus recorded (`--prometheus`): the same conclusions as from a live probe —
//! `restarts` (the process start time changed, or kube-state-metrics counted restarts),
//! `oom-killed` (last termination reason), `memory-growth` and `memory-near-limit`, and
//! `server-errors` from the 5xx ratio — each saying it comes from the history.

use crate::diagnose::collect::prometheus::History;
use crate::diagnose::model::{Finding, Kind, Severity};

/// Growth of resident memory over the window that counts, bytes (as for a live probe).
const GROWTH_MIN: f64 = 32.0 * 1024.0 * 1024.0;
/// 5xx ratio over the window that counts.
const ERROR_RATIO: f64 = 0.01;

/// Distinct values of a start-time series, minus one: the restarts it shows.
fn restarts_in(points: &[(f64, f64)]) -> usize {
    let mut n = 0;
    for w in points.windows(2) {
        if (w[1].1 - w[0].1).abs() >= 1.0 {
            n += 1;
        }
    }
    n
}

/// Findings from the history.
pub fn findings(h: &History) -> Vec<Finding> {
    let mut out = Vec::new();
    let window =
        humantime::format_duration(std::time::Duration::from_secs(h.window_seconds as u64));
    let restarts: usize = h.start_times.iter().map(|s| restarts_in(&s.points)).sum();
    let ksm_restarts: f64 = h.container_restarts.iter().map(|r| r.1).sum();
    if restarts > 0 || ksm_restarts >= 1.0 {
        let total = restarts.max(ksm_restarts.round() as usize);
        let mut f = Finding::new(
            Kind::Restarts,
            if total >= 3 {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "the process restarted {total} time(s) in the last {window} (Prometheus history)"
            ),
        )
        .cause_and_fix(
            "the process exited or was killed and started again (crash, OOM kill, liveness probe)",
            "read the termination reason and the memory before each restart",
        )
        .detail("restarts", total);
        for s in &h.start_times {
            let n = restarts_in(&s.points);
            if n > 0 {
                f = f.evidence(format!(
                    "process_start_time_seconds of {} changed {n} time(s)",
                    s.labels.get("instance").map_or("?", String::as_str)
                ));
            }
        }
        for (c, n) in &h.container_restarts {
            f = f.evidence(format!("kube-state-metrics: {c} restarted {n:.0} time(s)"));
        }
        out.push(f);
    }
    let oom: Vec<&(String, String)> = h
        .terminations
        .iter()
        .filter(|t| t.1 == "OOMKilled")
        .collect();
    if !oom.is_empty() {
        let mut f = Finding::new(
            Kind::OomKilled,
            Severity::Critical,
            format!("{} container(s) were last terminated OOMKilled (Prometheus history)", oom.len()),
        )
        .cause_and_fix(
            "memory grew until the kernel killed the container at its limit",
            "find the growth (memory over the window below); raise the limit only for legitimate use",
        )
        .detail("containers", oom.len());
        for (c, _) in oom {
            f = f.evidence(format!("kube-state-metrics: {c} last terminated OOMKilled"));
        }
        out.push(f);
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    for s in &h.memory {
        let (Some(first), Some(max)) = (
            s.points.first().map(|p| p.1),
            s.points
                .iter()
                .map(|p| p.1)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
        ) else {
            continue;
        };
        if max - first >= GROWTH_MIN {
            out.push(
                Finding::new(
                    Kind::MemoryGrowth,
                    Severity::High,
                    format!(
                        "resident memory of {} grew from {:.0} MiB to {:.0} MiB in the last {window} \
                         (Prometheus history)",
                        s.labels.get("instance").map_or("?", String::as_str),
                        mib(first),
                        mib(max)
                    ),
                )
                .evidence("measured from process_resident_memory_bytes in Prometheus")
                .cause_and_fix(
                    "memory retained by requests and never released; under a limit the container \
                     is OOMKilled",
                    "find what requests append to and bound it",
                )
                .detail("before_bytes", first)
                .detail("after_bytes", max),
            );
            break;
        }
    }
    if let Some(limit) = h.memory_limits.iter().map(|l| l.1).reduce(f64::min) {
        let max = h
            .memory
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        if limit > 0.0 && max >= 0.9 * limit {
            out.push(
                Finding::new(
                    Kind::MemoryNearLimit,
                    Severity::High,
                    format!(
                        "memory reached {:.0} MiB of a {:.0} MiB limit in the last {window} \
                         (Prometheus history)",
                        mib(max),
                        mib(limit)
                    ),
                )
                .cause_and_fix(
                    "memory grows towards the limit; at the limit the container is OOMKilled",
                    "fix the growth, or raise the limit for legitimate use",
                ),
            );
        }
    }
    if let (Some(r), Some(n)) = (h.error_ratio, h.requests)
        && r >= ERROR_RATIO
    {
        out.push(
            Finding::new(
                Kind::ServerErrors,
                if r >= 0.2 { Severity::High } else { Severity::Medium },
                format!(
                    "{:.1} % of {n:.0} requests failed with 5xx in the last {window} (Prometheus history)",
                    r * 100.0
                ),
            )
            .cause_and_fix(
                "the application answered with errors",
                "read the application's logs for the failing requests",
            )
            .detail("ratio", (r * 1000.0).round() / 1000.0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::collect::prometheus::Series;

    fn series(instance: &str, values: &[f64]) -> Series {
        Series {
            labels: [("instance".to_string(), instance.to_string())]
                .into_iter()
                .collect(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect(),
        }
    }

    #[test]
    fn a_restart_an_oom_kill_growth_and_errors_are_read_from_history() {
        let mib = 1024.0 * 1024.0;
        let h = History {
            window_seconds: 3600.0,
            memory: vec![series("a:9090", &[20.0 * mib, 120.0 * mib, 250.0 * mib])],
            start_times: vec![series("a:9090", &[100.0, 100.0, 200.0])],
            error_ratio: Some(0.3),
            requests: Some(100.0),
            terminations: vec![("web-1/web".into(), "OOMKilled".into())],
            memory_limits: vec![("web-1/web".into(), 256.0 * mib)],
            ..History::default()
        };
        let kinds: Vec<Kind> = findings(&h).iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Restarts,
                Kind::OomKilled,
                Kind::MemoryGrowth,
                Kind::MemoryNearLimit,
                Kind::ServerErrors
            ]
        );
    }

    #[test]
    fn a_quiet_history_says_nothing() {
        let h = History {
            window_seconds: 3600.0,
            memory: vec![series("a", &[20e6, 21e6, 20e6])],
            start_times: vec![series("a", &[100.0, 100.0])],
            error_ratio: Some(0.0),
            requests: Some(100.0),
            ..History::default()
        };
        assert!(findings(&h).is_empty());
    }
}
