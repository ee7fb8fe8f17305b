//! Where throughput stops growing, and why: the knee of the saturation ramp and its kind —
//! a connection limit (connections accepted but never served, requests timing out, connect
//! time jumping, while the CPU is idle), CPU-bound (throughput flat with the CPU at its limit),
//! or contention (throughput falling as concurrency grows) — and whether the health endpoints
//! starved meanwhile. Pure functions over the steps, plus the text table and chart.

use std::fmt::Write;

use serde::Serialize;

use crate::diagnose::collect::ramp::Step;
use crate::diagnose::model::{Finding, Kind, Severity, fmt_ms};

/// Growth of throughput between steps below which it has stopped growing.
const FLAT_GROWTH: f64 = 1.2;
/// Fall of throughput from the best step that counts as contention.
const CONTENTION_FALL: f64 = 0.7;
/// Share of failed requests in a step that marks the knee.
const ERROR_SHARE: f64 = 0.05;
/// CPU share of the available cores at which the process is CPU-bound.
const CPU_BOUND: f64 = 0.8;

/// The kind of knee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KneeKind {
    /// New connections are accepted but not served: a cap on connections or workers.
    ConnectionLimit,
    /// The CPU is at its limit.
    CpuBound,
    /// Throughput falls as concurrency grows: threads fight over a lock or a resource.
    Contention,
    /// Throughput stopped growing and nothing above explains it.
    Unexplained,
}

impl KneeKind {
    /// Words for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection limit",
            Self::CpuBound => "CPU-bound",
            Self::Contention => "contention",
            Self::Unexplained => "throughput stops growing",
        }
    }
}

/// The knee of a ramp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knee {
    /// Connections at the first step past the knee.
    pub at_connections: usize,
    /// Connections of the last step before it (the most that is served well).
    pub last_good_connections: usize,
    /// Best throughput seen, per second.
    pub peak_throughput: f64,
    /// Its kind.
    pub kind: KneeKind,
    /// First step at which health checks failed, if they did.
    pub health_starved_at: Option<usize>,
}

fn failed_share(s: &Step) -> f64 {
    let attempts = s.answered + s.error_count();
    s.error_count() as f64 / attempts.max(1) as f64
}

/// The knee, or `None` when every step grew throughput without errors. Failures (connections
/// never served, errors, flat throughput with the CPU at its limit) mark it first; only without
/// them does a fall in throughput mark contention — a fall alone can be noise from a busy
/// machine, failures cannot.
pub fn knee(steps: &[Step], cores: f64) -> Option<Knee> {
    let first = steps.first()?;
    let cpu_bound = |s: &Step| s.cpu_ratio.is_some_and(|c| c >= CPU_BOUND * cores);
    // A latency jump alone is not a failure: on a busy machine the load generator and its
    // neighbours make latency jump too.
    let failing = |prev: &Step, s: &Step| {
        let grows = s.throughput >= prev.throughput * FLAT_GROWTH;
        s.unserved_connections > 0 || failed_share(s) >= ERROR_SHARE || (!grows && cpu_bound(s))
    };
    let mut peaks = Vec::with_capacity(steps.len());
    let mut peak: f64 = 0.0;
    for s in steps {
        peak = peak.max(s.throughput);
        peaks.push(peak);
    }
    let at = (1..steps.len())
        .find(|&i| failing(&steps[i - 1], &steps[i]))
        .or_else(|| {
            (1..steps.len()).find(|&i| steps[i].throughput < peaks[i - 1] * CONTENTION_FALL)
        })?;
    let (prev, s) = (&steps[at - 1], &steps[at]);
    let connect_jump = match (first.connect_p99_ms, s.connect_p99_ms) {
        (Some(a), Some(b)) => b >= 5.0 * a.max(1.0) && b >= 20.0,
        _ => false,
    };
    // A cap that sheds the excess answers a fast 503 or closes the connection.
    let shed = s
        .errors
        .keys()
        .any(|k| k == "503" || k == "reset" || k.starts_with("connect-"));
    let kind = if cpu_bound(s) {
        KneeKind::CpuBound
    } else if s.unserved_connections > 0 || connect_jump || shed || s.errors.contains_key("timeout")
    {
        KneeKind::ConnectionLimit
    } else if s.throughput < peaks[at - 1] * CONTENTION_FALL && s.error_count() == 0 {
        KneeKind::Contention
    } else {
        KneeKind::Unexplained
    };
    // Starvation means the checks passed at first and failed later; checks failing from the
    // first step are a wrong probe, not starvation.
    let passes = |s: &Step| s.health_checks > 0 && s.health_ok == s.health_checks;
    let health_starved_at = if passes(first) {
        steps
            .iter()
            .find(|s| s.health_checks > 0 && s.health_ok < s.health_checks)
            .map(|s| s.connections)
    } else {
        None
    };
    Some(Knee {
        at_connections: s.connections,
        last_good_connections: prev.connections,
        peak_throughput: peaks[at - 1],
        kind,
        health_starved_at,
    })
}

/// The `saturation` finding for a knee: high when the health endpoints starved (probes then
/// restart or unroute pods exactly when load is high), medium otherwise.
pub fn finding(k: &Knee, steps: &[Step]) -> Finding {
    let at = steps.iter().find(|s| s.connections == k.at_connections);
    let mut f = Finding::new(
        Kind::Saturation,
        if k.health_starved_at.is_some() {
            Severity::High
        } else {
            Severity::Medium
        },
        format!(
            "throughput stops growing at {} connections ({}); {} connections are served well, \
             peak {:.0} requests/s",
            k.at_connections,
            k.kind.describe(),
            k.last_good_connections,
            k.peak_throughput
        ),
    )
    .detail("knee_connections", k.at_connections)
    .detail("last_good_connections", k.last_good_connections)
    .detail(
        "knee_kind",
        serde_json::to_value(k.kind).unwrap_or_default(),
    )
    .detail("peak_throughput", k.peak_throughput)
    .detail("health_starved_at", k.health_starved_at);
    if let Some(s) = at {
        f = f.evidence(format!(
            "at {} connections: {} never served, errors {}, connect p99 {}, CPU {}",
            s.connections,
            s.unserved_connections,
            if s.errors.is_empty() {
                "none".to_string()
            } else {
                s.errors
                    .iter()
                    .map(|(k, v)| format!("{k} ×{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            s.connect_p99_ms.map_or("-".into(), fmt_ms),
            s.cpu_ratio.map_or("unknown".into(), |c| format!(
                "{:.0} % of a core",
                c * 100.0
            ))
        ));
    }
    if let Some(c) = k.health_starved_at {
        let s = steps.iter().find(|s| s.connections == c);
        f = f.evidence(format!(
            "health endpoints starved from {c} connections: {} of {} checks passed",
            s.map_or(0, |s| s.health_ok),
            s.map_or(0, |s| s.health_checks)
        ));
    }
    let (cause, fix) = match k.kind {
        KneeKind::ConnectionLimit => (
            "the service caps connections (or workers): the excess waits in the accept queue \
             until its requests time out, or is shed (503, closed), while the CPU is idle",
            "raise the cap if memory allows, shed excess connections with a fast 503 instead \
             of leaving them queued, and serve health probes on a separate port or budget so \
             they are not starved",
        ),
        KneeKind::CpuBound => (
            "the CPU is at its limit: each request costs more CPU than the cores can give",
            "profile the request path; add replicas or CPU",
        ),
        KneeKind::Contention => (
            "requests wait on a shared lock or resource, and more concurrency makes it worse",
            "find the shared lock (a global mutex, one connection to the store) and shard it \
             or shorten the critical section",
        ),
        KneeKind::Unexplained => (
            "requests fail without a connection limit, CPU saturation or a fall in throughput \
             showing why",
            "look at what requests wait on (the store, a downstream call)",
        ),
    };
    f.cause_and_fix(cause, fix)
}

/// The ramp as a table and a bar chart of throughput, for the text and Markdown reports.
pub fn table(steps: &[Step], knee: Option<&Knee>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>6} {:>9} {:>9} {:>9} {:>11} {:>9} {:>7} {:>6}  errors",
        "conns", "req/s", "p50", "p99", "connect p99", "unserved", "CPU", "health"
    );
    for s in steps {
        let errors = if s.errors.is_empty() {
            "-".to_string()
        } else {
            s.errors
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            o,
            "{:>6} {:>9.0} {:>9} {:>9} {:>11} {:>9} {:>7} {:>6}  {errors}",
            s.connections,
            s.throughput,
            s.p50_ms.map_or("-".into(), fmt_ms),
            s.p99_ms.map_or("-".into(), fmt_ms),
            s.connect_p99_ms.map_or("-".into(), fmt_ms),
            s.unserved_connections,
            s.cpu_ratio
                .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
            if s.health_checks == 0 {
                "-".to_string()
            } else {
                format!("{}/{}", s.health_ok, s.health_checks)
            },
        );
    }
    let max = steps.iter().map(|s| s.throughput).fold(0.0, f64::max);
    let _ = writeln!(o, "\nthroughput by connections:");
    for s in steps {
        let width = if max > 0.0 {
            (s.throughput / max * 40.0).round() as usize
        } else {
            0
        };
        let mark = if knee.is_some_and(|k| k.at_connections == s.connections) {
            "  <- knee"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "{:>6} |{:<40}| {:.0}/s{mark}",
            s.connections,
            "#".repeat(width),
            s.throughput
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn step(connections: usize, throughput: f64) -> Step {
        Step {
            connections,
            answered: (throughput * 2.0) as usize,
            throughput,
            p50_ms: Some(1.0),
            p99_ms: Some(3.0),
            connect_p50_ms: Some(0.1),
            connect_p99_ms: Some(0.3),
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            unserved_connections: 0,
            cpu_ratio: Some(0.3),
            health_ok: 8,
            health_checks: 8,
        }
    }

    #[test]
    fn unserved_connections_with_an_idle_cpu_are_a_connection_limit_and_starved_health_is_named() {
        let mut at64 = step(64, 2000.0);
        at64.unserved_connections = 48;
        at64.errors.insert("timeout".into(), 48);
        at64.cpu_ratio = Some(0.2);
        at64.health_ok = 0;
        let steps = vec![step(1, 500.0), step(4, 1500.0), step(16, 2000.0), at64];
        let k = knee(&steps, 2.0).expect("knee");
        // 16 → 64 stopped growing, but the knee is where throughput first stalls: 16 (4 → 16
        // grew 1.33×) is fine, 64 is not.
        assert_eq!(k.at_connections, 64);
        assert_eq!(k.last_good_connections, 16);
        assert_eq!(k.kind, KneeKind::ConnectionLimit);
        assert_eq!(k.health_starved_at, Some(64));
        let f = finding(&k, &steps);
        assert_eq!(f.severity, Severity::High);
        assert!(f.title.contains("connection limit"), "{}", f.title);
        let t = table(&steps, Some(&k));
        assert!(t.contains("<- knee"), "{t}");
    }

    #[test]
    fn flat_throughput_with_the_cpu_at_its_limit_is_cpu_bound() {
        let mut at16 = step(16, 1050.0);
        at16.cpu_ratio = Some(1.9);
        let steps = vec![step(1, 400.0), step(4, 1000.0), at16];
        let k = knee(&steps, 2.0).expect("knee");
        assert_eq!((k.at_connections, k.kind), (16, KneeKind::CpuBound));
    }

    #[test]
    fn falling_throughput_without_errors_is_contention() {
        let steps = vec![step(1, 400.0), step(4, 1000.0), step(16, 600.0)];
        let k = knee(&steps, 2.0).expect("knee");
        assert_eq!((k.at_connections, k.kind), (16, KneeKind::Contention));
    }

    #[test]
    fn failures_mark_the_knee_before_an_earlier_noisy_fall() {
        let mut at64 = step(64, 900.0);
        at64.errors.insert("503".into(), 300);
        let steps = vec![step(1, 1500.0), step(4, 2300.0), step(16, 1500.0), at64];
        let k = knee(&steps, 2.0).expect("knee");
        assert_eq!((k.at_connections, k.kind), (64, KneeKind::ConnectionLimit));
    }

    #[test]
    fn a_probe_failing_from_the_first_step_is_not_starvation() {
        let mut at16 = step(16, 2000.0);
        at16.unserved_connections = 3;
        let mut steps = vec![step(1, 500.0), step(4, 1500.0), at16];
        for s in &mut steps {
            s.health_ok = 0;
        }
        assert_eq!(knee(&steps, 2.0).expect("knee").health_starved_at, None);
    }

    #[test]
    fn throughput_that_keeps_growing_has_no_knee() {
        let steps = vec![step(1, 400.0), step(4, 1500.0), step(16, 5000.0)];
        assert_eq!(knee(&steps, 2.0), None);
    }
}
