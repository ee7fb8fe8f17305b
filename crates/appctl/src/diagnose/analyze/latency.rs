//! Latency analysis, pure functions over samples: summary percentiles, the fast/slow split of a
//! two-mode distribution, periodicity by counter value or request number, growth over time,
//! and outliers.
//!
//! The first request is left out of the latency patterns: it pays for connection set-up and
//! lazy initialisation, and one slow first request is not a pattern.

use serde::Serialize;

use crate::diagnose::model::{Finding, Kind, Sample, Severity, fmt_ms};

/// Latency percentiles of the requests that got an answer or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Requests summarised.
    pub count: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// A slow group clearly apart from a fast group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// Latencies above this many ms are slow.
    pub threshold_ms: f64,
}

/// Smallest ratio between the slow and the fast group's boundary values for two modes.
const MODE_RATIO: f64 = 5.0;
/// Smallest absolute gap between the modes: below it, jitter on a fast path is not a mode.
const MODE_GAP_MS: f64 = 50.0;

/// Value at quantile `q` (0..=1) of sorted `values`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// Samples that say something about latency: answered successfully or timed out, without the
/// warm-up request. Failures are left out: a proxy's instant 502 or a refused connection is
/// fast for reasons that belong to the error analysis.
pub fn timed(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| {
            s.ordinal > 1
                && (s.outcome.is_success()
                    || matches!(s.outcome, crate::diagnose::model::Outcome::Timeout))
        })
        .collect()
}

/// Percentiles over `samples` (warm-up included: it is part of what a user saw).
pub fn summary(samples: &[Sample]) -> Option<Summary> {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|s| !s.outcome.is_connection_error())
        .map(|s| s.latency_ms)
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        count: v.len(),
        p50_ms: quantile(&v, 0.5),
        p90_ms: quantile(&v, 0.9),
        p99_ms: quantile(&v, 0.99),
        max_ms: v[v.len() - 1],
    })
}

/// Finds two modes: the largest ratio between neighbouring sorted latencies, if it is at least
/// `MODE_RATIO` and `MODE_GAP_MS` wide and each side holds two or more requests.
pub fn split(latencies: &[f64]) -> Option<Split> {
    let mut v = latencies.to_vec();
    v.sort_by(f64::total_cmp);
    if v.len() < 4 {
        return None;
    }
    let mut best: Option<(f64, usize)> = None;
    for i in 1..v.len() - 1 {
        // Each side needs two members: index i is the last fast one, so i >= 1 and
        // v.len() - 1 - i >= 2.
        if v.len() - 1 - i < 2 {
            break;
        }
        let (lo, hi) = (v[i], v[i + 1]);
        let ratio = hi.max(1.0) / lo.max(1.0);
        if ratio >= MODE_RATIO && hi - lo >= MODE_GAP_MS && best.is_none_or(|(r, _)| ratio > r) {
            best = Some((ratio, i));
        }
    }
    // Also allow a single fast member at index 0 to be excluded from "two fast" only when
    // there are at least two fast ones; the loop starting at 1 guarantees that.
    best.map(|(_, i)| Split {
        threshold_ms: (v[i].max(1.0) * v[i + 1].max(1.0)).sqrt(),
    })
}

/// What a period is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Key {
    /// The counter value in the body (inferred for timed-out requests between two known ones).
    CounterValue,
    /// The request's position in the probe.
    RequestNumber,
}

/// "Every `period`th request is slow".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Periodic {
    /// Requests per cycle (2..=10).
    pub period: u64,
    /// Remainder of the key modulo the period for the slow requests.
    pub phase: u64,
    /// What the key is.
    pub keyed_by: Key,
    /// Median latency of the slow requests, ms (a lower bound when they timed out).
    pub slow_ms: f64,
    /// Median latency of the others, ms.
    pub fast_ms: f64,
    /// Requests consistent with the pattern.
    pub matching: usize,
    /// Requests considered.
    pub considered: usize,
}

/// Fraction of requests that must agree with a period.
const PERIOD_AGREEMENT: f64 = 0.9;

/// Counter values for every sample: the value read, or for a sample without one (timed out),
/// the value implied by its neighbours when probing was sequential and the neighbours' values
/// are consecutive with the request numbers between them.
pub fn inferred_counters(samples: &[Sample], sequential: bool) -> Vec<Option<u64>> {
    let mut out: Vec<Option<u64>> = samples.iter().map(|s| s.counter).collect();
    if !sequential {
        return out;
    }
    let known: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].counter.is_some())
        .collect();
    for pair in known.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (Some(va), Some(vb)) = (samples[a].counter, samples[b].counter) else {
            continue;
        };
        let ords = (samples[b].ordinal - samples[a].ordinal) as u64;
        if vb.checked_sub(va) == Some(ords) {
            for (i, slot) in out.iter_mut().enumerate().take(b).skip(a + 1) {
                *slot = Some(va + (samples[i].ordinal - samples[a].ordinal) as u64);
            }
        }
    }
    out
}

/// Looks for the smallest period 2..=10 whose phase explains which requests are slow.
/// `slow[i]` classifies `samples[i]`; `keys[i]` is its counter value (or `None`).
pub fn periodicity(samples: &[&Sample], slow: &[bool], keys: &[Option<u64>]) -> Option<Periodic> {
    let n = samples.len();
    if n < 6 || slow.iter().filter(|s| **s).count() < 2 {
        return None;
    }
    let keyed = keys.iter().filter(|k| k.is_some()).count();
    let (keyed_by, key_of): (Key, Box<dyn Fn(usize) -> Option<u64>>) = if keyed * 10 >= n * 8 {
        (Key::CounterValue, Box::new(|i| keys[i]))
    } else {
        (
            Key::RequestNumber,
            Box::new(|i| Some(samples[i].ordinal as u64)),
        )
    };
    for period in 2..=10u64 {
        if (n as u64) < 2 * period {
            break;
        }
        for phase in 0..period {
            let (mut agree, mut considered, mut in_phase, mut slow_in_phase, mut slow_total) =
                (0, 0, 0, 0, 0);
            for (i, &is_slow) in slow.iter().enumerate() {
                let Some(k) = key_of(i) else { continue };
                considered += 1;
                slow_total += usize::from(is_slow);
                let predicted = k % period == phase;
                if predicted {
                    in_phase += 1;
                    slow_in_phase += usize::from(is_slow);
                }
                agree += usize::from(predicted == is_slow);
            }
            let out_phase = considered - in_phase;
            // The phase must be mostly slow, and explain most slow requests: a few random slow
            // requests can otherwise line up with a long period by chance.
            let share = |a: usize, b: usize| b > 0 && a as f64 >= PERIOD_AGREEMENT * b as f64;
            if considered >= 6
                && in_phase >= 2
                && out_phase >= 2
                && slow_in_phase >= 2
                && share(slow_in_phase, in_phase)
                && share(slow_in_phase, slow_total)
                && share(agree, considered)
            {
                let mut slow_v = Vec::new();
                let mut fast_v = Vec::new();
                for (sample, &is_slow) in samples.iter().zip(slow) {
                    if is_slow {
                        slow_v.push(sample.latency_ms);
                    } else {
                        fast_v.push(sample.latency_ms);
                    }
                }
                return Some(Periodic {
                    period,
                    phase,
                    keyed_by,
                    slow_ms: median(&slow_v),
                    fast_ms: median(&fast_v),
                    matching: agree,
                    considered,
                });
            }
        }
    }
    None
}

/// Words for a phase: "even counter values", "requests 3, 6, 9, …".
pub fn describe_phase(p: &Periodic) -> String {
    match (p.keyed_by, p.period, p.phase) {
        (Key::CounterValue, 2, 0) => "even counter values".into(),
        (Key::CounterValue, 2, 1) => "odd counter values".into(),
        (Key::CounterValue, period, phase) => format!("counter values ≡ {phase} mod {period}"),
        (Key::RequestNumber, period, phase) => {
            let first = if phase == 0 { period } else { phase };
            format!(
                "requests {first}, {}, {}, …",
                first + period,
                first + 2 * period
            )
        }
    }
}

/// English ordinal for small numbers: 2nd, 3rd, 4th.
fn nth(n: u64) -> String {
    match n {
        2 => "2nd".into(),
        3 => "3rd".into(),
        n => format!("{n}th"),
    }
}

/// The `periodic-latency` finding for a detected period.
pub fn periodic_finding(p: &Periodic, timeout_ms: f64) -> Finding {
    let timed_out = p.slow_ms >= timeout_ms * 0.99;
    let slow = if timed_out {
        format!("≥ {} (timed out)", fmt_ms(p.slow_ms))
    } else {
        fmt_ms(p.slow_ms)
    };
    // A timed-out slow request may be far slower than the timeout (the original took 21 s).
    let severity = if timed_out || p.slow_ms >= 1000.0 {
        Severity::High
    } else {
        Severity::Medium
    };
    Finding::new(
        Kind::PeriodicLatency,
        severity,
        format!(
            "every {} request ({}) is slow: median {} vs {}",
            nth(p.period),
            describe_phase(p),
            slow,
            fmt_ms(p.fast_ms)
        ),
    )
    .evidence(format!(
        "{} of {} requests follow the pattern",
        p.matching, p.considered
    ))
    .cause_and_fix(
        "work that runs on a fixed share of requests, on the request path: e.g. a background \
         collection triggered synchronously by every Nth request",
        "move the periodic work off the request path (a background task on a timer) and keep \
         request handlers constant-time",
    )
    .detail("period", p.period)
    .detail("phase", p.phase)
    .detail(
        "keyed_by",
        serde_json::to_value(p.keyed_by).unwrap_or_default(),
    )
    .detail("slow_ms", round1(p.slow_ms))
    .detail("fast_ms", round1(p.fast_ms))
}

/// Spearman rank correlation of request number and latency.
fn spearman(xs: &[f64], ys: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        for (rank, &i) in idx.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    }
    let (rx, ry) = (ranks(xs), ranks(ys));
    let n = xs.len() as f64;
    let mean = (n - 1.0) / 2.0;
    let (mut num, mut dx, mut dy) = (0.0, 0.0, 0.0);
    for i in 0..xs.len() {
        let (a, b) = (rx[i] - mean, ry[i] - mean);
        num += a * b;
        dx += a * a;
        dy += b * b;
    }
    if dx == 0.0 || dy == 0.0 {
        0.0
    } else {
        num / (dx * dy).sqrt()
    }
}

/// `latency-trend`: latency rising with the number of requests served (a leak slowing the
/// allocator, a growing list scanned per request). Needs ten answered requests, a rank
/// correlation of at least 0.6, and the last quarter's median at least twice and 20 ms above
/// the first quarter's.
pub fn trend(samples: &[&Sample]) -> Option<Finding> {
    let ok: Vec<&&Sample> = samples.iter().filter(|s| s.outcome.is_success()).collect();
    if ok.len() < 10 {
        return None;
    }
    let xs: Vec<f64> = ok.iter().map(|s| s.ordinal as f64).collect();
    let ys: Vec<f64> = ok.iter().map(|s| s.latency_ms).collect();
    let rho = spearman(&xs, &ys);
    let q = ok.len() / 4;
    let first = median(&ys[..q]);
    let last = median(&ys[ys.len() - q..]);
    if rho < 0.6 || last < 2.0 * first || last - first < 20.0 {
        return None;
    }
    Some(
        Finding::new(
            Kind::LatencyTrend,
            Severity::Medium,
            format!(
                "latency grows with requests served: {} in the first quarter, {} in the last",
                fmt_ms(first),
                fmt_ms(last)
            ),
        )
        .evidence(format!(
            "rank correlation of request number and latency: {rho:.2} over {} requests",
            ok.len()
        ))
        .cause_and_fix(
            "per-request work that grows with state accumulated by earlier requests (a growing \
             list, cache or leak)",
            "bound the state (evict, cap, stream) and check memory growth per request",
        )
        .detail("first_quarter_ms", round1(first))
        .detail("last_quarter_ms", round1(last))
        .detail("rank_correlation", round2(rho)),
    )
}

/// `slow-outliers`: a slow group with no period, at least two requests.
pub fn outliers(samples: &[&Sample], slow: &[bool]) -> Option<Finding> {
    let slow_ms: Vec<f64> = samples
        .iter()
        .zip(slow)
        .filter(|(_, s)| **s)
        .map(|(x, _)| x.latency_ms)
        .collect();
    let fast_ms: Vec<f64> = samples
        .iter()
        .zip(slow)
        .filter(|(_, s)| !**s)
        .map(|(x, _)| x.latency_ms)
        .collect();
    if slow_ms.len() < 2 || fast_ms.is_empty() {
        return None;
    }
    let which: Vec<String> = samples
        .iter()
        .zip(slow)
        .filter(|(_, s)| **s)
        .map(|(x, _)| x.ordinal.to_string())
        .take(12)
        .collect();
    Some(
        Finding::new(
            Kind::SlowOutliers,
            Severity::Medium,
            format!(
                "{} of {} requests are slow with no regular period: median {} vs {}",
                slow_ms.len(),
                samples.len(),
                fmt_ms(median(&slow_ms)),
                fmt_ms(median(&fast_ms))
            ),
        )
        .evidence(format!("slow requests: {}", which.join(", ")))
        .cause_and_fix(
            "intermittent blocking: lock contention, garbage collection, a slow dependency, or \
             one slow instance behind a load balancer",
            "look at the per-instance breakdown and the dependency latencies of the slow requests",
        )
        .detail("slow_ms", round1(median(&slow_ms)))
        .detail("fast_ms", round1(median(&fast_ms)))
        .detail("slow_count", slow_ms.len()),
    )
}

/// Rounds to 0.1.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Rounds to 0.01.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::model::Outcome;

    fn sample(ordinal: usize, latency_ms: f64, counter: Option<u64>) -> Sample {
        Sample {
            ordinal,
            start_ms: 0.0,
            latency_ms,
            outcome: Outcome::Status { code: 200 },
            counter,
            instance: None,
        }
    }

    fn classify(samples: &[&Sample]) -> Vec<bool> {
        let lat: Vec<f64> = samples.iter().map(|s| s.latency_ms).collect();
        match split(&lat) {
            Some(sp) => lat.iter().map(|l| *l > sp.threshold_ms).collect(),
            None => vec![false; lat.len()],
        }
    }

    #[test]
    fn even_counter_values_slow_is_period_two_phase_zero() {
        let all: Vec<Sample> = (1..=12)
            .map(|i| {
                sample(
                    i,
                    if i % 2 == 0 { 21_000.0 } else { 7.0 },
                    Some(i as u64 + 100),
                )
            })
            .collect();
        let t = timed(&all);
        let slow = classify(&t);
        let keys: Vec<Option<u64>> = t.iter().map(|s| s.counter).collect();
        let p = periodicity(&t, &slow, &keys).expect("period");
        assert_eq!((p.period, p.phase, p.keyed_by), (2, 0, Key::CounterValue));
        assert!(p.slow_ms > 20_000.0 && p.fast_ms < 10.0);
        assert!(
            periodic_finding(&p, 30_000.0)
                .title
                .contains("even counter values")
        );
    }

    #[test]
    fn every_third_request_without_counter_is_keyed_by_request_number() {
        let all: Vec<Sample> = (1..=15)
            .map(|i| sample(i, if i % 3 == 0 { 800.0 } else { 3.0 }, None))
            .collect();
        let t = timed(&all);
        let slow = classify(&t);
        let keys = vec![None; t.len()];
        let p = periodicity(&t, &slow, &keys).expect("period");
        assert_eq!((p.period, p.phase, p.keyed_by), (3, 0, Key::RequestNumber));
    }

    #[test]
    fn timed_out_requests_get_their_counter_values_from_their_neighbours() {
        let mut all: Vec<Sample> = (1..=6)
            .map(|i| sample(i, 5.0, Some(i as u64 + 10)))
            .collect();
        all[1].counter = None;
        all[3].counter = None;
        let keys = inferred_counters(&all, true);
        assert_eq!(keys[1], Some(12));
        assert_eq!(keys[3], Some(14));
        assert_eq!(inferred_counters(&all, false)[1], None);
    }

    #[test]
    fn jitter_is_not_two_modes_and_not_a_period() {
        let all: Vec<Sample> = (1..=40)
            .map(|i| sample(i, 2.0 + ((i * 7919) % 13) as f64 * 0.9, Some(i as u64)))
            .collect();
        let t = timed(&all);
        let lat: Vec<f64> = t.iter().map(|s| s.latency_ms).collect();
        assert_eq!(split(&lat), None);
        assert!(trend(&t).is_none());
    }

    #[test]
    fn one_slow_first_request_is_ignored() {
        let mut all: Vec<Sample> = (1..=20).map(|i| sample(i, 4.0, Some(i as u64))).collect();
        all[0].latency_ms = 900.0;
        let t = timed(&all);
        let lat: Vec<f64> = t.iter().map(|s| s.latency_ms).collect();
        assert_eq!(split(&lat), None);
    }

    #[test]
    fn growing_latency_is_a_trend_and_flat_latency_is_not() {
        let all: Vec<Sample> = (1..=30)
            .map(|i| sample(i, 5.0 + i as f64 * 4.0, None))
            .collect();
        let t = timed(&all);
        let f = trend(&t).expect("trend");
        assert_eq!(f.kind, Kind::LatencyTrend);
        let flat: Vec<Sample> = (1..=30).map(|i| sample(i, 5.0, None)).collect();
        assert!(trend(&timed(&flat)).is_none());
    }

    #[test]
    fn random_slow_requests_are_outliers_not_a_period() {
        let slow_at = [4, 11, 13, 25];
        let all: Vec<Sample> = (1..=30)
            .map(|i| {
                sample(
                    i,
                    if slow_at.contains(&i) { 600.0 } else { 5.0 },
                    Some(i as u64),
                )
            })
            .collect();
        let t = timed(&all);
        let slow = classify(&t);
        let keys: Vec<Option<u64>> = t.iter().map(|s| s.counter).collect();
        assert_eq!(periodicity(&t, &slow, &keys), None);
        let f = outliers(&t, &slow).expect("outliers");
        assert_eq!(f.details["slow_count"], 4);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
