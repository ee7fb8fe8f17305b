//! The hung service: requests stop getting answers from some request on while the port still
//! accepts connections (a deadlock, an exhausted worker pool, a spin). The most urgent failure
//! there is, and not noise: it gets a finding of its own.
//!
//! [`candidate`] is a pure function over the samples; what makes the candidate a finding — the
//! port still accepting, a patient request that also got nothing, the health endpoints, CPU,
//! threads and socket states — is gathered by the caller into [`HangEvidence`] and judged by
//! [`finding`].

use serde::Serialize;

use super::latency::median;
use crate::diagnose::model::{Finding, Kind, Outcome, Sample, Severity, fmt_ms};

/// Timeouts in a row that make a hang candidate (one or two timeouts are a slow request).
pub const HUNG_RUN: usize = 3;
/// Timeouts in a row after which the hang is certain and probing can stop.
pub const CERTAIN_HUNG_RUN: usize = 5;

/// Where the service stopped answering.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hang {
    /// Request number of the first timeout of the run.
    pub from_request: usize,
    /// Timeouts in the run.
    pub timed_out: usize,
    /// Requests answered before it.
    pub served_before: usize,
    /// Median latency of those answers, ms.
    pub answered_median_ms: f64,
    /// Request number of the first answer after the run, if it came back.
    pub recovered_at: Option<usize>,
}

/// The first run of at least [`HUNG_RUN`] timeouts after the service had answered comfortably
/// (median latency at most half the timeout). A service that answers close to the timeout is
/// slow, not hung: its timeouts are the tail of its latency, and it gets no candidate.
pub fn candidate(samples: &[Sample], timeout_ms: f64) -> Option<Hang> {
    let first_answer = samples
        .iter()
        .position(|s| matches!(s.outcome, Outcome::Status { .. }))?;
    let mut i = first_answer;
    while i < samples.len() {
        if samples[i].outcome == Outcome::Timeout {
            let start = i;
            while i < samples.len() && samples[i].outcome == Outcome::Timeout {
                i += 1;
            }
            if i - start >= HUNG_RUN {
                let answered: Vec<f64> = samples[..start]
                    .iter()
                    .filter(|s| matches!(s.outcome, Outcome::Status { .. }))
                    .map(|s| s.latency_ms)
                    .collect();
                let answered_median_ms = median(&answered);
                if answered_median_ms > timeout_ms / 2.0 {
                    return None;
                }
                return Some(Hang {
                    from_request: samples[start].ordinal,
                    timed_out: i - start,
                    served_before: answered.len(),
                    answered_median_ms,
                    recovered_at: samples[i..]
                        .iter()
                        .find(|s| matches!(s.outcome, Outcome::Status { .. }))
                        .map(|s| s.ordinal),
                });
            }
        }
        i += 1;
    }
    None
}

/// How a connection attempt to the target's port went while it hung.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Connect {
    /// The kernel accepted the connection (the listen socket is open).
    Accepted {
        /// Time to connect, ms.
        ms: f64,
    },
    /// Nothing listens any more: the process is gone, not hung.
    Refused,
    /// The connection was not accepted in time: the accept backlog is full.
    TimedOut,
    /// Another error.
    Failed {
        /// What the system said.
        message: String,
    },
}

/// One health endpoint asked while the service hung.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    /// The URL.
    pub url: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Latency, ms (the timeout when it timed out).
    pub latency_ms: f64,
}

/// What the local process was doing while it hung (Linux /proc).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessState {
    /// The process.
    pub pid: i32,
    /// CPU used over the measuring window, as a share of one CPU (1.0 = one core busy).
    pub cpu_ratio: f64,
    /// Threads.
    pub threads: usize,
    /// Threads by scheduler state letter (`R` running, `S` sleeping, `D` uninterruptible).
    pub thread_states: std::collections::BTreeMap<String, usize>,
}

/// TCP sockets on the target's port, from /proc/net/tcp and /proc/net/tcp6.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sockets {
    /// Connections waiting in the accept queue of the listening socket (its rx_queue): the
    /// process is not calling accept.
    pub accept_backlog: u32,
    /// Established connections on the server side.
    pub established: usize,
    /// Connections the client closed and the server has not (CLOSE_WAIT): handlers that never
    /// finished, one per abandoned request.
    pub close_wait: usize,
}

/// Everything gathered about a hang candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HangEvidence {
    /// Where it stopped answering.
    pub hang: Hang,
    /// A new connection to the port, after the probe.
    pub connect: Option<Connect>,
    /// A request with a longer timeout, after the probe (`None` when it came back by itself).
    pub patient: Option<HealthCheck>,
    /// Health endpoints asked after the probe.
    pub health: Vec<HealthCheck>,
    /// The local process, when found.
    pub process: Option<ProcessState>,
    /// Socket states on the port, when the target is on this host.
    pub sockets: Option<Sockets>,
}

/// CPU share at or above which a hung process is spinning.
const SPIN_CPU: f64 = 0.5;
/// CPU share below which a hung process is idle (waiting).
const IDLE_CPU: f64 = 0.1;

/// The `hung` finding, or `None` when the evidence says it is not a hang: the port refuses
/// (the process is gone: that is `unavailable`) or the patient request got an answer (slow).
pub fn finding(e: &HangEvidence) -> Option<Finding> {
    if matches!(e.connect, Some(Connect::Refused)) {
        return None;
    }
    if e.patient
        .as_ref()
        .is_some_and(|p| matches!(p.outcome, Outcome::Status { .. }))
    {
        return None;
    }
    let h = &e.hang;
    let back = match h.recovered_at {
        Some(r) => format!("it answered again at request {r}"),
        None => "it had not come back when the probe ended".to_string(),
    };
    let mut f = Finding::new(
        Kind::Hung,
        Severity::High,
        format!(
            "the service stopped answering at request {} after serving {} (median {}) while \
             its port still accepts connections; {back}",
            h.from_request,
            h.served_before,
            fmt_ms(h.answered_median_ms)
        ),
    )
    .evidence(format!("{} requests in a row got no answer", h.timed_out))
    .detail("from_request", h.from_request)
    .detail("timed_out", h.timed_out)
    .detail("served_before", h.served_before)
    .detail("recovered_at", h.recovered_at);
    match &e.connect {
        Some(Connect::Accepted { ms }) => {
            f = f.evidence(format!(
                "a new connection was accepted in {} after the probe",
                fmt_ms(*ms)
            ));
        }
        Some(Connect::TimedOut) => {
            f = f.evidence("a new connection was not accepted in time: the accept backlog is full");
        }
        Some(Connect::Failed { message }) => {
            f = f.evidence(format!("a new connection failed: {message}"));
        }
        Some(Connect::Refused) | None => {}
    }
    if let Some(p) = &e.patient {
        f = f.evidence(format!(
            "a request allowed {} also got no answer",
            fmt_ms(p.latency_ms)
        ));
    }
    let hanging_health: Vec<&HealthCheck> =
        e.health.iter().filter(|c| c.outcome.is_failure()).collect();
    // A 404 is no health endpoint (e.g. the target's own host when probes are served on a
    // management port, or a gateway that routes no probe path): what answered it says nothing
    // about what a liveness probe would see.
    let absent = |c: &HealthCheck| c.outcome == Outcome::Status { code: 404 };
    for c in &e.health {
        let note = if absent(c) {
            " (no health endpoint there: pass --probe with the liveness URL)"
        } else {
            ""
        };
        f = f.evidence(format!(
            "health endpoint {}: {} in {}{note}",
            c.url,
            c.outcome.label(),
            fmt_ms(c.latency_ms)
        ));
    }
    let health_state = if e.health.iter().all(absent) {
        "unknown"
    } else if hanging_health.is_empty() {
        "answer"
    } else {
        "hang"
    };
    f = f.detail("health_endpoints", health_state);
    let mut kind = "unknown";
    if let Some(p) = &e.process {
        kind = if p.cpu_ratio >= SPIN_CPU {
            "spin"
        } else if p.cpu_ratio < IDLE_CPU {
            "idle"
        } else {
            "busy"
        };
        let states: Vec<String> = p
            .thread_states
            .iter()
            .map(|(s, n)| format!("{s} ×{n}"))
            .collect();
        f = f
            .evidence(format!(
                "process {}: {:.0} % of a CPU while hung, {} threads ({})",
                p.pid,
                p.cpu_ratio * 100.0,
                p.threads,
                states.join(", ")
            ))
            .detail("cpu_ratio", (p.cpu_ratio * 100.0).round() / 100.0)
            .detail("threads", p.threads);
    }
    f = f.detail("state", kind);
    if let Some(s) = &e.sockets {
        f = f
            .evidence(format!(
                "sockets on the port: accept backlog {}, {} established, {} in CLOSE_WAIT",
                s.accept_backlog, s.established, s.close_wait
            ))
            .detail("accept_backlog", s.accept_backlog)
            .detail("close_wait", s.close_wait);
    }
    let health_note = match health_state {
        "answer" => {
            " The health endpoints still answer, so a liveness probe will not restart it: \
             the probe checks something the stuck requests do not need."
        }
        "hang" => " The health endpoints hang too, so a liveness probe will restart it.",
        _ => "",
    };
    let (cause, fix) = match kind {
        "spin" => (
            "a request handler spins on the CPU (an endless loop, a retry loop without \
             back-off) and the requests behind it wait",
            "take a stack dump of the busy threads (e.g. `gdb -p PID`, `py-spy dump`, \
             `jstack`) and fix the loop; bound every loop and retry",
        ),
        "idle" => (
            "the handlers wait for something that never comes while using no CPU: a deadlock \
             (two locks taken in opposite orders), or a pool (workers, database connections) \
             exhausted by requests that never release it",
            "take a stack dump of the waiting threads to see which lock or pool they wait on; \
             put timeouts on every wait and release pooled resources on every path",
        ),
        _ => (
            "the handlers stopped finishing requests while the listener still accepts them: a \
             deadlock, an exhausted worker pool, or a spin",
            "check the process's CPU and threads on its host (run diagnose there, or pass \
             --pid): idle means a deadlock or pool, busy means a spin",
        ),
    };
    f.cause = format!("{cause}.{health_note}");
    f.fix = fix.to_string();
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ordinal: usize, latency_ms: f64, outcome: Outcome) -> Sample {
        Sample {
            ordinal,
            start_ms: 0.0,
            latency_ms,
            outcome,
            counter: None,
            instance: None,
        }
    }

    fn ok(o: usize, ms: f64) -> Sample {
        s(o, ms, Outcome::Status { code: 200 })
    }

    fn timeout(o: usize) -> Sample {
        s(o, 1000.0, Outcome::Timeout)
    }

    fn hung_at_6() -> Vec<Sample> {
        let mut v: Vec<Sample> = (1..=5).map(|o| ok(o, 3.0)).collect();
        v.extend((6..=10).map(timeout));
        v
    }

    #[test]
    fn timeouts_in_a_row_after_fast_answers_are_a_candidate_from_the_first() {
        let h = candidate(&hung_at_6(), 1000.0).expect("hang");
        assert_eq!((h.from_request, h.timed_out, h.served_before), (6, 5, 5));
        assert_eq!(h.recovered_at, None);
        let mut back = hung_at_6();
        back.push(ok(11, 3.0));
        assert_eq!(
            candidate(&back, 1000.0).map(|h| h.recovered_at),
            Some(Some(11))
        );
    }

    #[test]
    fn a_slow_service_near_its_timeout_and_lone_timeouts_are_not_hung() {
        // Answers around 900 ms with a 1 s timeout: its tail times out, three in a row.
        let mut v: Vec<Sample> = (1..=5).map(|o| ok(o, 900.0)).collect();
        v.extend((6..=8).map(timeout));
        assert_eq!(candidate(&v, 1000.0), None);
        // Fast, with two timeouts in a row: slow requests, not a hang.
        let mut v: Vec<Sample> = (1..=5).map(|o| ok(o, 3.0)).collect();
        v.extend([timeout(6), timeout(7), ok(8, 3.0)]);
        assert_eq!(candidate(&v, 1000.0), None);
        // Never answered: unreachable, not hung.
        let v: Vec<Sample> = (1..=5).map(timeout).collect();
        assert_eq!(candidate(&v, 1000.0), None);
    }

    fn evidence(cpu: f64, health: Outcome) -> HangEvidence {
        HangEvidence {
            hang: candidate(&hung_at_6(), 1000.0).expect("hang"),
            connect: Some(Connect::Accepted { ms: 0.2 }),
            patient: Some(HealthCheck {
                url: "u".into(),
                outcome: Outcome::Timeout,
                latency_ms: 5000.0,
            }),
            health: vec![HealthCheck {
                url: "http://h/healthz".into(),
                outcome: health,
                latency_ms: 1.0,
            }],
            process: Some(ProcessState {
                pid: 7,
                cpu_ratio: cpu,
                threads: 9,
                thread_states: [("S".to_string(), 9)].into_iter().collect(),
            }),
            sockets: Some(Sockets {
                accept_backlog: 0,
                established: 5,
                close_wait: 5,
            }),
        }
    }

    #[test]
    fn an_idle_hang_is_a_deadlock_or_pool_and_a_busy_one_a_spin() {
        let f = finding(&evidence(0.01, Outcome::Status { code: 200 })).expect("hung");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.details["state"], "idle");
        assert_eq!(f.details["health_endpoints"], "answer");
        assert!(f.cause.contains("deadlock"));
        assert!(f.cause.contains("liveness probe will not restart"));
        let f = finding(&evidence(0.98, Outcome::Timeout)).expect("hung");
        assert_eq!(f.details["state"], "spin");
        assert_eq!(f.details["health_endpoints"], "hang");
    }

    #[test]
    fn a_health_url_answering_404_is_no_health_evidence() {
        let f = finding(&evidence(0.01, Outcome::Status { code: 404 })).expect("hung");
        assert_eq!(f.details["health_endpoints"], "unknown");
        assert!(!f.cause.contains("liveness probe"), "{}", f.cause);
        assert!(
            f.evidence.iter().any(|l| l.contains("pass --probe")),
            "{:?}",
            f.evidence
        );
    }

    #[test]
    fn a_refused_port_or_a_patient_answer_is_not_a_hang() {
        let mut e = evidence(0.0, Outcome::Timeout);
        e.connect = Some(Connect::Refused);
        assert!(finding(&e).is_none());
        let mut e = evidence(0.0, Outcome::Timeout);
        e.patient = Some(HealthCheck {
            url: "u".into(),
            outcome: Outcome::Status { code: 200 },
            latency_ms: 3000.0,
        });
        assert!(finding(&e).is_none());
    }
}
