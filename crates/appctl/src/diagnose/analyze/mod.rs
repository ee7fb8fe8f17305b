//! Analyses: pure functions from evidence to findings, unit-tested on synthetic series.
//!
//! [`analyze`] puts the HTTP analyses together — it classifies requests as fast or slow once,
//! runs every pattern detector ([`latency`], [`errors`], [`counter`], [`hung`]) and says when
//! the verdict is certain enough to stop probing. [`resources`] judges the process and metrics
//! evidence, [`coverage`] what the health endpoints say against what the target does,
//! [`saturation`] the knee of the `--ramp`, [`history`] what Prometheus recorded.

pub mod counter;
pub mod coverage;
pub mod errors;
pub mod history;
pub mod hung;
pub mod latency;
pub mod resources;
pub mod saturation;

use serde::Serialize;

use self::counter::InstanceStats;
use self::latency::Summary;
use crate::diagnose::model::{Finding, Sample};

/// Everything the HTTP evidence says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpAnalysis {
    /// Latency percentiles.
    pub summary: Option<Summary>,
    /// Latency above which a request counts as slow, when there are two modes.
    pub slow_threshold_ms: Option<f64>,
    /// Per-instance figures.
    pub instances: Vec<InstanceStats>,
    /// What was found.
    pub findings: Vec<Finding>,
    /// Where the service stopped answering, if it did: a `hung` finding once the collector
    /// has confirmed it (the port still accepts, a patient request gets nothing either).
    #[serde(skip)]
    pub hang: Option<self::hung::Hang>,
    /// True when more requests would not change the verdict.
    #[serde(skip)]
    pub certain: bool,
}

/// Failures in a row after which an outage is certain.
const CERTAIN_OUTAGE_RUN: usize = 5;

/// Analyses `samples` (in start order). `sequential` is true when requests went one at a time,
/// which lets counter values be inferred and ordered; `timeout_ms` is the per-request timeout.
pub fn analyze(samples: &[Sample], sequential: bool, timeout_ms: f64) -> HttpAnalysis {
    let timed = latency::timed(samples);
    let lat: Vec<f64> = timed.iter().map(|s| s.latency_ms).collect();
    let split = latency::split(&lat);
    let slow: Vec<bool> = match split {
        Some(sp) => lat.iter().map(|l| *l > sp.threshold_ms).collect(),
        None => vec![false; lat.len()],
    };
    let all_keys = latency::inferred_counters(samples, sequential);
    let keys: Vec<Option<u64>> = timed
        .iter()
        .map(|t| {
            samples
                .iter()
                .position(|s| s.ordinal == t.ordinal)
                .and_then(|i| all_keys[i])
        })
        .collect();

    let mut findings = Vec::new();
    let mut certain = false;
    let periodic = latency::periodicity(&timed, &slow, &keys);
    if let Some(p) = &periodic {
        findings.push(latency::periodic_finding(p, timeout_ms));
        certain |= p.matching == p.considered && p.considered >= (3 * p.period as usize).max(8);
    } else {
        if split.is_some()
            && let Some(f) = latency::outliers(&timed, &slow)
        {
            findings.push(f);
        }
        if let Some(f) = latency::trend(&timed) {
            findings.push(f);
        }
    }
    if let Some(o) = errors::outage(samples) {
        certain |= o.failed >= CERTAIN_OUTAGE_RUN;
        findings.push(errors::unavailable_finding(&o, samples));
    }
    if let Some(f) = errors::server_errors(samples) {
        findings.push(f);
    }
    if let Some(f) = errors::client_errors(samples) {
        findings.push(f);
    }
    let hang = self::hung::candidate(samples, timeout_ms);
    if let Some(h) = &hang {
        certain |= h.timed_out >= self::hung::CERTAIN_HUNG_RUN && h.recovered_at.is_none();
    }
    findings.extend(counter::anomalies(samples, sequential));
    let instances = counter::instances(&timed, &slow);
    if let Some(f) = counter::skew(&instances) {
        findings.push(f);
    }
    HttpAnalysis {
        summary: latency::summary(samples),
        slow_threshold_ms: split.map(|s| latency::round1(s.threshold_ms)),
        instances,
        findings,
        hang,
        certain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::model::{Kind, Outcome};

    fn s(ordinal: usize, latency_ms: f64, outcome: Outcome, counter: Option<u64>) -> Sample {
        Sample {
            ordinal,
            start_ms: 0.0,
            latency_ms,
            outcome,
            counter,
            instance: Some("pod-a".into()),
        }
    }

    #[test]
    fn the_historical_slow_even_bug_is_certain_within_twelve_requests() {
        // Odd values answer in 7 ms; even ones time out at 2 s (no body, so no value).
        let mut v = Vec::new();
        for i in 1..=12 {
            let value = i as u64;
            let sample = if value % 2 == 0 {
                s(i, 2000.0, Outcome::Timeout, None)
            } else {
                s(i, 7.0, Outcome::Status { code: 200 }, Some(value))
            };
            v.push(sample);
            let a = analyze(&v, true, 2000.0);
            if a.certain {
                assert_eq!(a.findings[0].kind, Kind::PeriodicLatency);
                assert_eq!(a.findings[0].details["period"], 2);
                assert_eq!(a.findings[0].details["phase"], 0);
                assert!(i <= 12);
                return;
            }
        }
        panic!("not certain after 12 requests");
    }

    #[test]
    fn a_healthy_target_has_no_findings() {
        let v: Vec<Sample> = (1..=40)
            .map(|i| {
                let jitter = ((i * 37) % 11) as f64 * 0.3;
                let first = if i == 1 { 250.0 } else { 0.0 };
                s(
                    i,
                    1.5 + jitter + first,
                    Outcome::Status { code: 200 },
                    Some(i as u64),
                )
            })
            .collect();
        let a = analyze(&v, true, 2000.0);
        assert!(a.findings.is_empty(), "{:#?}", a.findings);
        assert!(!a.certain);
    }

    #[test]
    fn a_crash_after_a_few_requests_is_certain_after_five_failures() {
        let mut v: Vec<Sample> = (1..=4)
            .map(|i| s(i, 30.0, Outcome::Status { code: 200 }, Some(i as u64)))
            .collect();
        for i in 5..=9 {
            v.push(s(i, 1.0, Outcome::Status { code: 502 }, None));
        }
        let a = analyze(&v, true, 2000.0);
        assert!(a.certain);
        assert_eq!(a.findings[0].kind, Kind::Unavailable);
        assert!(a.findings.iter().any(|f| f.kind == Kind::ServerErrors));
    }
}
