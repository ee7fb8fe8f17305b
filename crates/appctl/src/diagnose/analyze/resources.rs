//! Judges resource evidence — the local process and the metrics endpoint — as pure
//! functions of snapshots: `child-processes`, `memory-growth` and `restarts` (the process start
//! time changed).

use crate::diagnose::collect::metrics::Reading;
use crate::diagnose::collect::process::{Child, ProcessEvidence};
use crate::diagnose::model::{Finding, Kind, Severity};

/// Memory growth per request that counts as a leak, bytes (1 MiB).
const LEAK_PER_REQUEST: f64 = 1024.0 * 1024.0;
/// Total growth below which nothing is reported, bytes (32 MiB).
const LEAK_MIN_TOTAL: u64 = 32 * 1024 * 1024;

/// True when `grown` bytes over `requests` requests is a leak: at least 1 MiB per request
/// and 32 MiB in all (the process and the metrics evidence use the same rule).
pub fn is_leak(grown: u64, requests: usize) -> bool {
    grown >= LEAK_MIN_TOTAL && grown as f64 / requests.max(1) as f64 >= LEAK_PER_REQUEST
}

/// Judges the evidence: `child-processes` and `memory-growth`.
pub fn process_findings(e: &ProcessEvidence) -> Vec<Finding> {
    let mut out = Vec::new();
    if !e.new_children.is_empty() {
        let still: Vec<&Child> = match &e.after {
            Some(after) => e
                .new_children
                .iter()
                .filter(|c| after.children.contains_key(&c.pid))
                .collect(),
            None => Vec::new(),
        };
        let busiest = e
            .new_children
            .iter()
            .map(|c| c.cpu_seconds / c.age_seconds.max(0.1))
            .fold(0.0, f64::max);
        let example = &e.new_children[0];
        out.push(
            Finding::new(
                Kind::ChildProcesses,
                Severity::High,
                format!(
                    "the target started {} child process(es) during {} requests; {} still \
                     running after the probe",
                    e.new_children.len(),
                    e.requests,
                    still.len()
                ),
            )
            .evidence(format!(
                "example: pid {} `{}`",
                example.pid, example.cmdline
            ))
            .evidence(format!(
                "busiest child used {:.0} % of a CPU",
                busiest * 100.0
            ))
            .cause_and_fix(
                "request handling spawns processes (e.g. a \"background collection\" started \
                 synchronously from the handler) that compete for CPU and outlive the request",
                "never spawn processes or threads per request: run collection as one background \
                 task on a timer, bounded in memory and CPU",
            )
            .detail("count", e.new_children.len())
            .detail("still_running", still.len())
            .detail("max_cpu_ratio", (busiest * 100.0).round() / 100.0),
        );
    }
    if let Some(after) = &e.after {
        if is_leak(
            after.rss_bytes.saturating_sub(e.before.rss_bytes),
            e.requests,
        ) {
            out.push(memory_growth(
                "process",
                e.before.rss_bytes,
                after.rss_bytes,
                e.requests,
            ));
        }
    }
    out
}

/// A `memory-growth` finding from two resident-memory readings `requests` apart.
pub fn memory_growth(source: &str, before: u64, after: u64, requests: usize) -> Finding {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let per = mib(after.saturating_sub(before)) / requests.max(1) as f64;
    Finding::new(
        Kind::MemoryGrowth,
        Severity::High,
        format!(
            "resident memory grew from {:.0} MiB to {:.0} MiB over {} requests ({:.1} MiB per \
             request)",
            mib(before),
            mib(after),
            requests,
            per
        ),
    )
    .evidence(format!("measured from the {source}"))
    .cause_and_fix(
        "each request retains memory that is never released (a global list appended to per \
         request); under a memory limit the container is OOMKilled and the proxy answers 502",
        "find what requests append to and bound it; a memory limit only decides when it dies",
    )
    .detail("before_bytes", before)
    .detail("after_bytes", after)
    .detail("bytes_per_request", (per * 1024.0 * 1024.0).round())
}

/// Judges two readings `requests` apart (`after` is `None` when the endpoint no longer
/// answered): `restarts` and `memory-growth`.
pub fn metrics_findings(
    before: &Reading,
    after: Option<&Reading>,
    requests: usize,
) -> Vec<Finding> {
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
mod process_tests {
    use super::*;
    use crate::diagnose::collect::process::Snapshot;

    fn snap(rss_mib: u64, children: &[(i32, f64)]) -> Snapshot {
        Snapshot {
            pid: 100,
            rss_bytes: rss_mib * 1024 * 1024,
            cpu_seconds: 1.0,
            threads: 4,
            open_fds: Some(10),
            children: children
                .iter()
                .map(|&(pid, cpu)| {
                    (
                        pid,
                        Child {
                            pid,
                            cmdline: "burn".into(),
                            cpu_seconds: cpu,
                            age_seconds: 2.0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn children_started_during_the_probe_are_reported_with_their_cpu() {
        let before = snap(10, &[]);
        let after = snap(10, &[(201, 1.6)]);
        let e = ProcessEvidence {
            new_children: after.children.values().cloned().collect(),
            before,
            after: Some(after),
            elapsed_seconds: 5.0,
            requests: 10,
            rss_by_request: Vec::new(),
        };
        let f = process_findings(&e);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::ChildProcesses);
        assert_eq!(f[0].details["still_running"], 1);
        assert_eq!(f[0].details["max_cpu_ratio"], 0.8);
    }

    #[test]
    fn memory_is_growth_only_when_large_per_request() {
        let leak = ProcessEvidence {
            before: snap(10, &[]),
            after: Some(snap(510, &[])),
            new_children: vec![],
            elapsed_seconds: 1.0,
            requests: 5,
            rss_by_request: Vec::new(),
        };
        assert_eq!(process_findings(&leak)[0].kind, Kind::MemoryGrowth);
        let steady = ProcessEvidence {
            before: snap(10, &[]),
            after: Some(snap(12, &[])),
            new_children: vec![],
            elapsed_seconds: 1.0,
            requests: 1000,
            rss_by_request: Vec::new(),
        };
        assert!(process_findings(&steady).is_empty());
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;
    use crate::diagnose::collect::metrics::parse;

    const BEFORE: &str = "# TYPE process_resident_memory_bytes gauge\n\
        process_resident_memory_bytes 10485760\n\
        # TYPE process_start_time_seconds gauge\n\
        process_start_time_seconds 1700000000\n\
        # TYPE metrics_app_fault_active gauge\n\
        metrics_app_fault_active{mode=\"leak\"} 1\n\
        metrics_app_fault_active{mode=\"slow-even\"} 0\n";

    #[test]
    fn growth_and_restart_are_found_and_steady_state_is_quiet() {
        let before = parse(BEFORE).expect("parse");
        let grown = Reading {
            rss_bytes: Some(10_485_760.0 + 500.0 * 1024.0 * 1024.0),
            ..before.clone()
        };
        let f = metrics_findings(&before, Some(&grown), 5);
        assert_eq!(f[0].kind, Kind::MemoryGrowth);
        let restarted = Reading {
            start_time_seconds: Some(1_700_000_100.0),
            ..before.clone()
        };
        assert_eq!(
            metrics_findings(&before, Some(&restarted), 5)[0].kind,
            Kind::Restarts
        );
        assert!(metrics_findings(&before, Some(&before), 5).is_empty());
        assert!(metrics_findings(&before, None, 5).is_empty());
    }
}
