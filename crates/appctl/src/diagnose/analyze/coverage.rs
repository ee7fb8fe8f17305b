//! Probe coverage: do the health endpoints tell the truth about the service? A readiness or
//! liveness endpoint that answers 200 while the endpoint users call fails keeps a broken pod in
//! rotation (`probe-blind`); one that fails while the service works gets healthy pods removed
//! or restarted (`probe-false-alarm`). Pure functions over the samples and the health checks.

use serde::Serialize;

use super::hung::HealthCheck;
use crate::diagnose::model::{Finding, Kind, Outcome, Sample, Severity};

/// The checks of one health endpoint during (or right after) the probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSeries {
    /// The endpoint.
    pub url: String,
    /// Where it came from: `--probe`, or `readinessProbe`/`livenessProbe`/`startupProbe` of a
    /// pod's spec.
    pub source: String,
    /// Each check, in order.
    pub checks: Vec<HealthCheck>,
}

impl HealthSeries {
    /// Share of checks answered with 2xx/3xx.
    pub fn ok_ratio(&self) -> f64 {
        let ok = self
            .checks
            .iter()
            .filter(|c| c.outcome.is_success())
            .count();
        ok as f64 / self.checks.len().max(1) as f64
    }
}

/// Share of failed requests from which the target counts as failing.
const TARGET_FAILING: f64 = 0.5;
/// Share of answered requests from which the target counts as working.
const TARGET_WORKING: f64 = 0.9;
/// Share of passing checks from which a probe says "healthy".
const PROBE_HEALTHY: f64 = 0.9;
/// Share of failing checks from which a probe says "unhealthy".
const PROBE_FAILING: f64 = 0.5;

/// A request the users would count as failed: 5xx, no answer, or a transport error.
fn failed(o: &Outcome) -> bool {
    o.is_server_error() || o.is_failure()
}

/// `probe-blind` and `probe-false-alarm` from the target's samples and the health series.
pub fn findings(samples: &[Sample], series: &[HealthSeries]) -> Vec<Finding> {
    let mut out = Vec::new();
    if samples.is_empty() {
        return out;
    }
    let n = samples.len() as f64;
    let failing = samples.iter().filter(|s| failed(&s.outcome)).count() as f64 / n;
    let working = samples.iter().filter(|s| s.outcome.is_success()).count() as f64 / n;
    let line = |s: &HealthSeries| {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for c in &s.checks {
            *by.entry(c.outcome.label()).or_default() += 1;
        }
        let outcomes: Vec<String> = by.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        format!("{} ({}): {}", s.url, s.source, outcomes.join(", "))
    };
    let target_line = {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for s in samples {
            *by.entry(s.outcome.label()).or_default() += 1;
        }
        let v: Vec<String> = by.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        format!("target: {}", v.join(", "))
    };
    let with_checks = series.iter().filter(|s| !s.checks.is_empty());
    let blind: Vec<&HealthSeries> = with_checks
        .clone()
        .filter(|s| failing >= TARGET_FAILING && s.ok_ratio() >= PROBE_HEALTHY)
        .collect();
    if !blind.is_empty() {
        let mut f = Finding::new(
            Kind::ProbeBlind,
            Severity::High,
            format!(
                "{} health endpoint(s) say healthy while {:.0} % of the target's requests fail",
                blind.len(),
                failing * 100.0
            ),
        )
        .evidence(target_line.clone())
        .cause_and_fix(
            "the health endpoint checks something other than what the failing requests need \
             (it answers from memory while the store, a lock or a key the requests use is \
             broken), so the pod stays in rotation and is never restarted",
            "make the readiness check exercise what requests depend on (the store, the \
             counter key) within a short timeout; keep liveness cheap but not blind to a stuck \
             request path",
        )
        .detail("failing_ratio", (failing * 1000.0).round() / 1000.0)
        .detail(
            "endpoints",
            blind.iter().map(|s| s.url.clone()).collect::<Vec<_>>(),
        );
        for s in &blind {
            f = f.evidence(line(s));
        }
        out.push(f);
    }
    let alarm: Vec<&HealthSeries> = with_checks
        .filter(|s| working >= TARGET_WORKING && 1.0 - s.ok_ratio() >= PROBE_FAILING)
        .collect();
    if !alarm.is_empty() {
        let mut f = Finding::new(
            Kind::ProbeFalseAlarm,
            Severity::High,
            format!(
                "{} health endpoint(s) fail while {:.0} % of the target's requests succeed",
                alarm.len(),
                working * 100.0
            ),
        )
        .evidence(target_line)
        .cause_and_fix(
            "the health endpoint fails for a reason that does not affect requests (a \
             dependency checked too strictly, a timeout shorter than the check, a wrong path or \
             port in the probe), so healthy pods are taken out of rotation or restarted",
            "check the probe's path, port and timeout against the service; let liveness fail \
             only when the process cannot recover by itself",
        )
        .detail(
            "endpoints",
            alarm.iter().map(|s| s.url.clone()).collect::<Vec<_>>(),
        );
        for s in &alarm {
            f = f.evidence(line(s));
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(code: u16, n: usize) -> Vec<Sample> {
        (1..=n)
            .map(|ordinal| Sample {
                ordinal,
                start_ms: 0.0,
                latency_ms: 1.0,
                outcome: Outcome::Status { code },
                counter: None,
                instance: None,
            })
            .collect()
    }

    fn series(code: u16, n: usize) -> HealthSeries {
        HealthSeries {
            url: "http://h/readyz".into(),
            source: "--probe".into(),
            checks: (0..n)
                .map(|_| HealthCheck {
                    url: "http://h/readyz".into(),
                    outcome: Outcome::Status { code },
                    latency_ms: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_probe_that_says_healthy_while_the_target_fails_is_blind() {
        let f = findings(&samples(503, 10), &[series(200, 5)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::ProbeBlind);
        assert!(f[0].evidence[1].contains("200 ×5"), "{:?}", f[0].evidence);
    }

    #[test]
    fn a_probe_that_fails_while_the_target_works_is_a_false_alarm() {
        let f = findings(&samples(200, 10), &[series(500, 5)]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::ProbeFalseAlarm);
    }

    #[test]
    fn agreeing_probes_say_nothing() {
        assert!(findings(&samples(200, 10), &[series(200, 5)]).is_empty());
        assert!(findings(&samples(503, 10), &[series(503, 5)]).is_empty());
        assert!(findings(&samples(200, 10), &[]).is_empty());
    }
}
