//! Counter and instance analysis, pure functions over samples: resets (a restart lost the
//! count), values repeated or going backwards across instances (replicas counting on their
//! own), and one instance slow or failing while the others are fine.

use std::collections::BTreeMap;

use serde::Serialize;

use super::latency::{median, round1};
use crate::diagnose::model::{Finding, Kind, Sample, Severity, fmt_ms};

/// Name used for answers without an instance header.
pub const UNKNOWN_INSTANCE: &str = "(no instance header)";

/// Per-instance figures for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceStats {
    /// Instance name.
    pub instance: String,
    /// Answers from it.
    pub requests: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// Share of its answers that were slow (by the probe-wide split), 0..=1.
    pub slow_ratio: f64,
    /// Share of its answers that were 5xx, 0..=1.
    pub error_ratio: f64,
    /// Lowest and highest counter value it returned.
    pub counter_range: Option<(u64, u64)>,
}

/// Figures per answering instance; `slow[i]` classifies `samples[i]`.
pub fn instances(samples: &[&Sample], slow: &[bool]) -> Vec<InstanceStats> {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if let Some(name) = s.instance.as_deref() {
            by.entry(name).or_default().push(i);
        }
    }
    by.into_iter()
        .map(|(name, idx)| {
            let n = idx.len() as f64;
            let lat: Vec<f64> = idx.iter().map(|&i| samples[i].latency_ms).collect();
            let values: Vec<u64> = idx.iter().filter_map(|&i| samples[i].counter).collect();
            InstanceStats {
                instance: name.to_string(),
                requests: idx.len(),
                p50_ms: round1(median(&lat)),
                slow_ratio: idx.iter().filter(|&&i| slow[i]).count() as f64 / n,
                error_ratio: idx
                    .iter()
                    .filter(|&&i| samples[i].outcome.is_server_error())
                    .count() as f64
                    / n,
                counter_range: values
                    .iter()
                    .min()
                    .zip(values.iter().max())
                    .map(|(a, b)| (*a, *b)),
            }
        })
        .collect()
}

/// `instance-skew`: one instance with at least three answers is slow (≥ 30 % slow, or a median
/// five times the others' and 20 ms above) or failing (≥ 30 % 5xx) while every other instance
/// is fine (≤ 10 % slow, ≤ 5 % 5xx).
pub fn skew(stats: &[InstanceStats]) -> Option<Finding> {
    let eligible: Vec<&InstanceStats> = stats.iter().filter(|s| s.requests >= 3).collect();
    if eligible.len() < 2 {
        return None;
    }
    for bad in &eligible {
        let others: Vec<&&InstanceStats> = eligible
            .iter()
            .filter(|o| o.instance != bad.instance)
            .collect();
        let others_fine = others
            .iter()
            .all(|o| o.slow_ratio <= 0.1 && o.error_ratio <= 0.05);
        let others_p50 = others.iter().map(|o| o.p50_ms).fold(0.0, f64::max);
        let slow = bad.slow_ratio >= 0.3
            || (bad.p50_ms >= 5.0 * others_p50.max(0.1) && bad.p50_ms - others_p50 >= 20.0);
        let failing = bad.error_ratio >= 0.3;
        if others_fine && (slow || failing) {
            let what = if failing && !slow {
                format!("{:.0} % of its answers are 5xx", bad.error_ratio * 100.0)
            } else {
                format!(
                    "{:.0} % of its answers are slow (median {})",
                    bad.slow_ratio * 100.0,
                    fmt_ms(bad.p50_ms)
                )
            };
            let mut f = Finding::new(
                Kind::InstanceSkew,
                Severity::Medium,
                format!(
                    "instance {} is {} while the {} other(s) are fine: {}",
                    bad.instance,
                    if failing && !slow { "failing" } else { "slow" },
                    others.len(),
                    what
                ),
            )
            .cause_and_fix(
                "something specific to that instance: a different version or configuration, a \
                 fault mode switched on, a noisy neighbour, or a bad node",
                "compare that pod's image, flags and node with the others; replace it (delete \
                 the pod) and see if the skew follows the configuration or the node",
            )
            .detail("instance", bad.instance.clone());
            for s in stats {
                f = f.evidence(format!(
                    "{}: {} answers, median {}, {:.0} % slow, {:.0} % 5xx",
                    s.instance,
                    s.requests,
                    fmt_ms(s.p50_ms),
                    s.slow_ratio * 100.0,
                    s.error_ratio * 100.0
                ));
            }
            return Some(f);
        }
    }
    None
}

/// `counter-reset` and `counter-inconsistent`, from the counter values in probe order.
///
/// Per instance, values must rise; a drop to at most half the previous value is a reset (the
/// process restarted and its count began again). Across instances, when each instance's own
/// values rise but the same value comes from two instances, or the merged sequence goes
/// backwards, the replicas count independently (an in-memory store with several replicas).
pub fn anomalies(samples: &[Sample], sequential: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let with: Vec<(&Sample, u64)> = samples
        .iter()
        .filter_map(|s| s.counter.map(|c| (s, c)))
        .collect();
    let mut last: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    let mut resets: Vec<String> = Vec::new();
    for (s, v) in &with {
        let name = s.instance.as_deref().unwrap_or(UNKNOWN_INSTANCE);
        if let Some((prev, ord)) = last.get(name)
            && *v <= prev / 2
        {
            resets.push(format!(
                "{name}: {prev} at request {ord}, then {v} at request {}",
                s.ordinal
            ));
        }
        last.insert(name, (*v, s.ordinal));
    }
    if !resets.is_empty() {
        let mut f = Finding::new(
            Kind::CounterReset,
            Severity::High,
            format!(
                "the counter started again from a low value {} time(s)",
                resets.len()
            ),
        )
        .cause_and_fix(
            "the process restarted and its count lived only in memory (a crash, an OOM kill, or \
             a rollout)",
            "keep the count in a shared store (the Redis store) and find out why the process \
             restarted",
        )
        .detail("resets", resets.len());
        for r in resets.iter().take(5) {
            f = f.evidence(r.clone());
        }
        out.push(f);
    }

    // Across instances: duplicates, and (when probing one request at a time) steps backwards.
    let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut backwards = 0;
    let mut prev: Option<(u64, &str)> = None;
    for (s, v) in &with {
        let name = s.instance.as_deref().unwrap_or(UNKNOWN_INSTANCE);
        if let Some(first) = seen.get(v)
            && *first != name
        {
            duplicates.push(format!("{v} from {first} and from {name}"));
        }
        seen.entry(*v).or_insert(name);
        if let Some((pv, pname)) = prev
            && sequential
            && pname != name
            && *v <= pv
            && *v > pv / 2
        {
            backwards += 1;
        }
        prev = Some((*v, name));
    }
    let names: std::collections::BTreeSet<&str> = with
        .iter()
        .map(|(s, _)| s.instance.as_deref().unwrap_or(UNKNOWN_INSTANCE))
        .collect();
    if names.len() >= 2 && (!duplicates.is_empty() || backwards > 0) {
        let mut f = Finding::new(
            Kind::CounterInconsistent,
            Severity::High,
            format!(
                "{} instances return overlapping counter values: {} duplicate(s), {} step(s) \
                 backwards",
                names.len(),
                duplicates.len(),
                backwards
            ),
        )
        .cause_and_fix(
            "each replica keeps its own count (in-memory store) instead of sharing one",
            "use the shared Redis store for more than one replica (the chart refuses replicas > \
             1 with the memory store)",
        )
        .detail("duplicates", duplicates.len())
        .detail("backwards", backwards)
        .detail("instances", names.len());
        for d in duplicates.iter().take(5) {
            f = f.evidence(d.clone());
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::model::Outcome;

    fn s(ordinal: usize, instance: &str, counter: Option<u64>, latency_ms: f64) -> Sample {
        Sample {
            ordinal,
            start_ms: 0.0,
            latency_ms,
            outcome: Outcome::Status { code: 200 },
            counter,
            instance: Some(instance.to_string()),
        }
    }

    #[test]
    fn a_restart_that_loses_the_count_is_a_reset() {
        let v = vec![
            s(1, "a", Some(10), 1.0),
            s(2, "a", Some(11), 1.0),
            s(3, "a", Some(1), 1.0),
            s(4, "a", Some(2), 1.0),
        ];
        let f = anomalies(&v, true);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, Kind::CounterReset);
    }

    #[test]
    fn replicas_counting_on_their_own_are_inconsistent() {
        let v: Vec<Sample> = (1..=8)
            .map(|i| {
                let inst = if i % 2 == 0 { "b" } else { "a" };
                s(i, inst, Some(i.div_ceil(2) as u64), 1.0)
            })
            .collect();
        let f = anomalies(&v, true);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, Kind::CounterInconsistent);
        assert_eq!(f[0].details["duplicates"], 4);
    }

    #[test]
    fn a_shared_gap_free_sequence_is_consistent() {
        let v: Vec<Sample> = (1..=9)
            .map(|i| s(i, ["a", "b", "c"][i % 3], Some(i as u64), 1.0))
            .collect();
        assert!(anomalies(&v, true).is_empty());
    }

    #[test]
    fn one_slow_instance_is_named() {
        let samples: Vec<Sample> = (1..=12)
            .map(|i| {
                let inst = ["a", "b", "c"][i % 3];
                s(
                    i,
                    inst,
                    Some(i as u64),
                    if inst == "b" && i % 2 == 0 {
                        900.0
                    } else {
                        3.0
                    },
                )
            })
            .collect();
        let refs: Vec<&Sample> = samples.iter().collect();
        let slow: Vec<bool> = refs.iter().map(|x| x.latency_ms > 100.0).collect();
        let stats = instances(&refs, &slow);
        let f = skew(&stats).expect("skew");
        assert_eq!(f.details["instance"], "b");
        // Everyone fine: no skew.
        let none = vec![false; refs.len()];
        let fast: Vec<Sample> = samples
            .iter()
            .map(|x| Sample {
                latency_ms: 3.0,
                ..x.clone()
            })
            .collect();
        let fast_refs: Vec<&Sample> = fast.iter().collect();
        assert!(skew(&instances(&fast_refs, &none)).is_none());
    }
}
