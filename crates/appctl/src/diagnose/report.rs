//! The report: findings ranked by severity with their evidence, cause and fix, rendered as
//! text (people at a terminal), JSON (machines; documented in docs/diagnose.md) or Markdown (a
//! root-cause write-up to paste into a ticket).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::analyze::counter::InstanceStats;
use super::analyze::latency::Summary;
use super::collect::metrics::Reading;
use super::collect::process::ProcessEvidence;
use super::model::{Finding, Sample, fmt_ms};

/// Version of the JSON layout; bumped only for incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Overall outcome, which also decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No findings (exit 0).
    Healthy,
    /// At least one finding (exit 1).
    Findings,
    /// No request got any HTTP answer (exit 2).
    Unreachable,
}

/// How the probe went.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeInfo {
    /// Requests allowed by `--requests`.
    pub requests_planned: usize,
    /// Requests sent.
    pub requests_sent: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
    /// True when the probe stopped because the verdict was certain.
    pub stopped_early: bool,
    /// Wall time of the probe, ms.
    pub elapsed_ms: u64,
}

/// Metrics scraped before and after.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsEvidence {
    /// Scraped URL.
    pub url: String,
    /// Before the probe.
    pub before: Option<Reading>,
    /// After the probe.
    pub after: Option<Reading>,
}

/// The saturation ramp's steps and knee.
#[derive(Debug, Clone, Serialize)]
pub struct RampEvidence {
    /// Seconds per step.
    pub step_seconds: f64,
    /// Each step.
    pub steps: Vec<super::collect::ramp::Step>,
    /// Where throughput stopped growing, if it did.
    pub knee: Option<super::analyze::saturation::Knee>,
}

/// Everything `appctl diagnose` found out.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Probed URL.
    pub target: String,
    /// Overall outcome.
    pub verdict: Verdict,
    /// How the probe went.
    pub probe: ProbeInfo,
    /// Latency percentiles.
    pub latency: Option<Summary>,
    /// Slow/fast boundary, when latencies had two modes.
    pub slow_threshold_ms: Option<f64>,
    /// Count of each outcome (`200`, `502`, `timeout`, `refused`, …).
    pub outcomes: BTreeMap<String, usize>,
    /// Per-instance figures.
    pub instances: Vec<InstanceStats>,
    /// Process evidence, when the target runs on this host.
    pub process: Option<ProcessEvidence>,
    /// Metrics evidence, with `--metrics`.
    pub metrics: Option<MetricsEvidence>,
    /// Kubernetes evidence, with `--kube`.
    pub kube: Option<super::kube::KubeEvidence>,
    /// What Prometheus recorded, with `--prometheus`.
    pub history: Option<super::collect::prometheus::History>,
    /// The saturation ramp, with `--ramp`.
    pub ramp: Option<RampEvidence>,
    /// Health endpoints checked next to the target (`--probe`, or the pod spec with `--kube`).
    pub health: Vec<super::analyze::coverage::HealthSeries>,
    /// What was gathered about a service that stopped answering (see the `hung` finding).
    pub hang: Option<super::analyze::hung::HangEvidence>,
    /// What could not be collected, and why.
    pub notes: Vec<String>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Every request.
    pub samples: Vec<Sample>,
}

impl Report {
    /// Orders findings most severe first (stable, so detectors' order breaks ties).
    pub fn rank(&mut self) {
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }

    /// JSON, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Text for a terminal.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "appctl diagnose {}", self.target);
        let _ = writeln!(o, "{}", self.probe_line());
        if let Some(l) = &self.latency {
            let _ = writeln!(
                o,
                "latency: p50 {}  p90 {}  p99 {}  max {}",
                fmt_ms(l.p50_ms),
                fmt_ms(l.p90_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.max_ms)
            );
        }
        let _ = writeln!(o, "outcomes: {}", self.outcome_line());
        for line in self.failure_lines() {
            let _ = writeln!(o, "failed: {line}");
        }
        let _ = writeln!(o);
        match self.verdict {
            Verdict::Healthy => {
                let _ = writeln!(o, "healthy: no findings");
            }
            Verdict::Unreachable => {
                let _ = writeln!(o, "unreachable: no request got an HTTP answer");
            }
            Verdict::Findings => {
                let _ = writeln!(o, "{} finding(s), most severe first:", self.findings.len());
            }
        }
        for (i, f) in self.findings.iter().enumerate() {
            let _ = writeln!(
                o,
                "\n{}. [{}] {}: {}",
                i + 1,
                format!("{:?}", f.severity).to_uppercase(),
                f.kind.as_str(),
                f.title
            );
            for e in &f.evidence {
                let _ = writeln!(o, "   evidence: {e}");
            }
            let _ = writeln!(o, "   likely cause: {}", f.cause);
            let _ = writeln!(o, "   suggested fix: {}", f.fix);
        }
        if let Some(k) = &self.kube {
            let _ = writeln!(
                o,
                "\nkubernetes: {} pod(s) in namespace {} matching {}",
                k.pods.len(),
                k.namespace,
                k.selector
            );
            for (container, log) in &k.previous_logs {
                let _ = writeln!(o, "  previous log of {container} (last lines):");
                let lines: Vec<&str> = log.lines().collect();
                for line in &lines[lines.len().saturating_sub(8)..] {
                    let _ = writeln!(o, "    {line}");
                }
            }
        }
        if let Some(h) = &self.history {
            let _ = writeln!(
                o,
                "\nhistory ({}, last {:.0} s): {} memory series, 5xx ratio {}, p50 {}, p99 {}",
                h.matchers,
                h.window_seconds,
                h.memory.len(),
                h.error_ratio
                    .map_or("-".to_string(), |r| format!("{:.1} %", r * 100.0)),
                h.p50_ms.map_or("-".to_string(), fmt_ms),
                h.p99_ms.map_or("-".to_string(), fmt_ms),
            );
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(o, "\nramp ({:.1} s per step):", r.step_seconds);
            for line in super::analyze::saturation::table(&r.steps, r.knee.as_ref()).lines() {
                let _ = writeln!(o, "  {line}");
            }
        }
        for n in &self.notes {
            let _ = writeln!(o, "\nnote: {n}");
        }
        let _ = writeln!(o, "\nrequests:");
        o.push_str(&self.request_table("  "));
        o
    }

    /// A Markdown root-cause write-up.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Diagnosis: `{}`\n", self.target);
        let _ = writeln!(o, "- {}", self.probe_line());
        if let Some(l) = &self.latency {
            let _ = writeln!(
                o,
                "- latency: p50 {}, p90 {}, p99 {}, max {}",
                fmt_ms(l.p50_ms),
                fmt_ms(l.p90_ms),
                fmt_ms(l.p99_ms),
                fmt_ms(l.max_ms)
            );
        }
        let _ = writeln!(o, "- outcomes: {}", self.outcome_line());
        for line in self.failure_lines() {
            let _ = writeln!(o, "- failed: {line}");
        }
        let _ = writeln!(o, "- verdict: **{:?}**\n", self.verdict);
        if !self.findings.is_empty() {
            let _ = writeln!(o, "## Findings\n");
        }
        for (i, f) in self.findings.iter().enumerate() {
            let _ = writeln!(
                o,
                "### {}. {} (`{}`, {:?})\n",
                i + 1,
                f.title,
                f.kind.as_str(),
                f.severity
            );
            let _ = writeln!(o, "**Evidence**\n");
            for e in &f.evidence {
                let _ = writeln!(o, "- {e}");
            }
            let _ = writeln!(o, "\n**Likely cause:** {}\n", f.cause);
            let _ = writeln!(o, "**Suggested fix:** {}\n", f.fix);
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(
                o,
                "## Saturation ramp ({:.1} s per step)\n\n```",
                r.step_seconds
            );
            o.push_str(&super::analyze::saturation::table(
                &r.steps,
                r.knee.as_ref(),
            ));
            let _ = writeln!(o, "```\n");
        }
        if !self.notes.is_empty() {
            let _ = writeln!(o, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(o, "- {n}");
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "## Requests\n\n```");
        o.push_str(&self.request_table(""));
        let _ = writeln!(o, "```");
        o
    }

    fn probe_line(&self) -> String {
        let p = &self.probe;
        format!(
            "{} of {} requests, concurrency {}, timeout {}, {}{}",
            p.requests_sent,
            p.requests_planned,
            p.concurrency,
            fmt_ms(p.timeout_ms as f64),
            fmt_ms(p.elapsed_ms as f64),
            if p.stopped_early {
                " (stopped early: verdict certain)"
            } else {
                ""
            }
        )
    }

    /// One line per cause of failed requests: `refused ×3: connection refused: …`.
    fn failure_lines(&self) -> Vec<String> {
        super::collect::http::failure_causes(self.samples.iter().map(|s| s.outcome.clone()))
            .into_iter()
            .map(|(label, n, why)| format!("{label} ×{n}: {why}"))
            .collect()
    }

    fn outcome_line(&self) -> String {
        self.outcomes
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn request_table(&self, indent: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{indent}{:>4} {:>10} {:>8} {:>8}  instance",
            "#", "latency", "outcome", "counter"
        );
        for s in &self.samples {
            let _ = writeln!(
                o,
                "{indent}{:>4} {:>10} {:>8} {:>8}  {}",
                s.ordinal,
                fmt_ms(s.latency_ms),
                s.outcome.label(),
                s.counter.map_or("-".to_string(), |c| c.to_string()),
                s.instance.as_deref().unwrap_or("-")
            );
        }
        o
    }
}
