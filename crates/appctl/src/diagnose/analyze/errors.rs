//! Error analysis, pure functions over samples: 5xx ratio and bursts, and the moment the
//! service became unavailable (gateway errors, refused or reset connections in a row) and
//! whether it came back.

use crate::diagnose::model::{Finding, Kind, Outcome, Sample, Severity};

/// Failures in a row that make "unavailable" (one lone 502 is a server error, not an outage).
pub const UNAVAILABLE_RUN: usize = 2;

/// True for a request that shows the service was not there: a proxy's 502/503/504 or a
/// refused/reset connection.
pub fn is_unavailable(outcome: &Outcome) -> bool {
    outcome.is_gateway_error() || outcome.is_connection_error()
}

/// `server-errors`: any 5xx, with ratio, gateway share and the longest burst.
pub fn server_errors(samples: &[Sample]) -> Option<Finding> {
    let errors: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.outcome.is_server_error())
        .collect();
    if errors.is_empty() {
        return None;
    }
    let gateway = errors
        .iter()
        .filter(|s| s.outcome.is_gateway_error())
        .count();
    let (mut burst, mut run) = (0, 0);
    for s in samples {
        run = if s.outcome.is_server_error() {
            run + 1
        } else {
            0
        };
        burst = burst.max(run);
    }
    let ratio = errors.len() as f64 / samples.len() as f64;
    let mut by_code: std::collections::BTreeMap<String, usize> = Default::default();
    for e in &errors {
        *by_code.entry(e.outcome.label()).or_default() += 1;
    }
    let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    let severity = if ratio >= 0.2 {
        Severity::High
    } else {
        Severity::Medium
    };
    let (cause, fix) = if gateway * 2 >= errors.len() {
        (
            "the proxy in front could not reach a healthy backend: the backend crashed, was \
             killed (e.g. OOMKilled) or failed its readiness check",
            "check restarts and the last termination reason of the backend pods; fix the crash \
             or raise the memory limit only if usage is legitimate",
        )
    } else {
        (
            "the application answered with errors itself",
            "read the application's logs for the failing requests (the request id is in the \
             X-Request-Id header)",
        )
    };
    Some(
        Finding::new(
            Kind::ServerErrors,
            severity,
            format!(
                "{} of {} requests failed with 5xx ({:.0} %), {} from a gateway",
                errors.len(),
                samples.len(),
                ratio * 100.0,
                gateway
            ),
        )
        .evidence(format!("status codes: {}", codes.join(", ")))
        .evidence(format!("longest burst: {burst} in a row"))
        .cause_and_fix(cause, fix)
        .detail("count", errors.len())
        .detail("ratio", (ratio * 1000.0).round() / 1000.0)
        .detail("gateway_errors", gateway)
        .detail("longest_burst", burst),
    )
}

/// Share of answered requests with a 4xx status that makes `client-errors` (a few 404s among
/// many 200s are someone else's typos, not this target's problem).
const CLIENT_ERROR_SHARE: f64 = 0.5;

/// What a 4xx status suggests, and what to do about it.
fn client_error_meaning(code: u16) -> (&'static str, &'static str, &'static str) {
    match code {
        404 | 410 => (
            "wrong path or route missing",
            "the path does not exist on this server: a mistyped URL, a route that was never \
             deployed, or a proxy rule that sends the path to the wrong backend",
            "check the path against the service's routes (and the gateway's HTTPRoute/Ingress \
             rules); probe a path the service serves",
        ),
        401 | 403 => (
            "authentication or authorisation required",
            "the endpoint needs credentials the probe did not send (401), or the credentials \
             are not allowed to use it (403)",
            "probe an endpoint that needs no login (e.g. a health endpoint), or check the \
             credentials and the access rules",
        ),
        405 => (
            "method not allowed",
            "the route exists but does not accept GET",
            "probe with the method the endpoint expects, or a GET endpoint",
        ),
        429 => (
            "rate limited",
            "the server or a proxy in front limits the request rate and the probe exceeded it",
            "probe more slowly (--interval) or raise the limit for this client",
        ),
        400 | 422 => (
            "bad request",
            "the server rejects the request as malformed: missing parameters or headers",
            "send the parameters the endpoint requires",
        ),
        _ => (
            "the request is rejected",
            "the server answers with a client error: the request does not fit this endpoint",
            "check the URL, the method and the credentials against the endpoint's documentation",
        ),
    }
}

/// `client-errors`: most HTTP answers are 4xx, naming what the most frequent status suggests.
pub fn client_errors(samples: &[Sample]) -> Option<Finding> {
    let answered = samples
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Status { .. }))
        .count();
    let mut by_code: std::collections::BTreeMap<u16, usize> = Default::default();
    for s in samples {
        if let Outcome::Status {
            code: code @ 400..=499,
        } = s.outcome
        {
            *by_code.entry(code).or_default() += 1;
        }
    }
    let count: usize = by_code.values().sum();
    if answered == 0 || (count as f64) < CLIENT_ERROR_SHARE * answered as f64 {
        return None;
    }
    let (&code, _) = by_code
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))?;
    let (suggests, cause, fix) = client_error_meaning(code);
    let ratio = count as f64 / answered as f64;
    let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    Some(
        Finding::new(
            Kind::ClientErrors,
            if ratio >= 0.9 {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "{count} of {answered} answers were client errors ({:.0} %), mostly {code}: {suggests}",
                ratio * 100.0
            ),
        )
        .evidence(format!("status codes: {}", codes.join(", ")))
        .cause_and_fix(cause, fix)
        .detail("count", count)
        .detail("ratio", (ratio * 1000.0).round() / 1000.0)
        .detail("status", code)
        .detail("suggests", suggests),
    )
}

/// Where an outage started, and whether the service came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// Request number of the first failure of the run.
    pub from_request: usize,
    /// Failures in the run.
    pub failed: usize,
    /// Request number of the first success after it, if any.
    pub recovered_at: Option<usize>,
    /// Successful requests before it.
    pub served_before: usize,
}

/// The first run of at least [`UNAVAILABLE_RUN`] unavailable answers after the service had
/// answered successfully.
pub fn outage(samples: &[Sample]) -> Option<Outage> {
    let first_ok = samples.iter().position(|s| s.outcome.is_success())?;
    let mut i = first_ok;
    while i < samples.len() {
        if is_unavailable(&samples[i].outcome) {
            let start = i;
            while i < samples.len() && is_unavailable(&samples[i].outcome) {
                i += 1;
            }
            if i - start >= UNAVAILABLE_RUN {
                let recovered_at = samples[i..]
                    .iter()
                    .find(|s| s.outcome.is_success())
                    .map(|s| s.ordinal);
                return Some(Outage {
                    from_request: samples[start].ordinal,
                    failed: i - start,
                    recovered_at,
                    served_before: samples[..start]
                        .iter()
                        .filter(|s| s.outcome.is_success())
                        .count(),
                });
            }
        }
        i += 1;
    }
    None
}

/// The `unavailable` finding for an outage.
pub fn unavailable_finding(o: &Outage, samples: &[Sample]) -> Finding {
    let kinds: Vec<String> = {
        let mut seen: Vec<String> = Vec::new();
        for s in samples
            .iter()
            .filter(|s| s.ordinal >= o.from_request)
            .take(o.failed)
        {
            let l = s.outcome.label();
            if !seen.contains(&l) {
                seen.push(l);
            }
        }
        seen
    };
    let back = match o.recovered_at {
        Some(r) => format!("it answered again at request {r}"),
        None => "it had not come back when the probe ended".to_string(),
    };
    Finding::new(
        Kind::Unavailable,
        Severity::Critical,
        format!(
            "the service became unavailable at request {} after serving {} requests; {}",
            o.from_request, o.served_before, back
        ),
    )
    .evidence(format!(
        "{} failures in a row: {}",
        o.failed,
        kinds.join(", ")
    ))
    .cause_and_fix(
        "the process serving the requests died or stopped answering after a few requests — \
         typically killed for memory (OOMKilled, exit code 137) or crashed; the proxy then \
         answers 502/503",
        "check the last termination reason of the pods (--kube) and memory growth per request \
         (--metrics); fix the leak rather than raising the limit",
    )
    .detail("from_request", o.from_request)
    .detail("failed", o.failed)
    .detail("served_before", o.served_before)
    .detail("recovered_at", o.recovered_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ordinal: usize, outcome: Outcome) -> Sample {
        Sample {
            ordinal,
            start_ms: 0.0,
            latency_ms: 2.0,
            outcome,
            counter: None,
            instance: None,
        }
    }

    fn ok(o: usize) -> Sample {
        s(o, Outcome::Status { code: 200 })
    }

    #[test]
    fn crash_then_502s_is_an_outage_from_the_first_502() {
        let mut v: Vec<Sample> = (1..=4).map(ok).collect();
        v.extend((5..=8).map(|o| s(o, Outcome::Status { code: 502 })));
        let o = outage(&v).expect("outage");
        assert_eq!(
            (o.from_request, o.failed, o.recovered_at, o.served_before),
            (5, 4, None, 4)
        );
        let f = unavailable_finding(&o, &v);
        assert!(f.title.contains("request 5"), "{}", f.title);
        let e = server_errors(&v).expect("errors");
        assert_eq!(e.details["gateway_errors"], 4);
        assert_eq!(e.details["longest_burst"], 4);
    }

    #[test]
    fn a_restart_shows_as_recovery() {
        let mut v: Vec<Sample> = (1..=3).map(ok).collect();
        v.push(s(4, Outcome::Refused));
        v.push(s(5, Outcome::Reset));
        v.push(s(6, Outcome::Status { code: 503 }));
        v.push(ok(7));
        let o = outage(&v).expect("outage");
        assert_eq!((o.from_request, o.failed, o.recovered_at), (4, 3, Some(7)));
    }

    #[test]
    fn a_single_error_is_not_an_outage_and_healthy_has_no_errors() {
        let mut v: Vec<Sample> = (1..=10).map(ok).collect();
        v[4] = s(5, Outcome::Status { code: 502 });
        assert_eq!(outage(&v), None);
        assert!(server_errors(&v).is_some());
        let healthy: Vec<Sample> = (1..=10).map(ok).collect();
        assert_eq!(outage(&healthy), None);
        assert!(server_errors(&healthy).is_none());
    }

    #[test]
    fn mostly_4xx_is_a_finding_naming_what_the_status_suggests() {
        let all_404: Vec<Sample> = (1..=10)
            .map(|o| s(o, Outcome::Status { code: 404 }))
            .collect();
        let f = client_errors(&all_404).expect("404s");
        assert_eq!(f.severity, Severity::High);
        assert_eq!(f.details["status"], 404);
        assert!(
            f.title.contains("wrong path or route missing"),
            "{}",
            f.title
        );
        assert!(f.cause.contains("never deployed"), "{}", f.cause);
        let mut auth: Vec<Sample> = (1..=6)
            .map(|o| s(o, Outcome::Status { code: 401 }))
            .collect();
        auth.extend((7..=10).map(ok));
        let f = client_errors(&auth).expect("401s");
        assert_eq!(f.severity, Severity::Medium);
        assert!(f.title.contains("authentication"), "{}", f.title);
        for (code, words) in [(405, "method"), (429, "rate limited"), (403, "authori")] {
            let v: Vec<Sample> = (1..=4).map(|o| s(o, Outcome::Status { code })).collect();
            assert!(client_errors(&v).expect("4xx").title.contains(words));
        }
        // A few 404s among many answers, or none, say nothing.
        let mut few: Vec<Sample> = (1..=10).map(ok).collect();
        few[3] = s(4, Outcome::Status { code: 404 });
        assert!(client_errors(&few).is_none());
        let refused: Vec<Sample> = (1..=3).map(|o| s(o, Outcome::Refused)).collect();
        assert!(client_errors(&refused).is_none());
    }

    #[test]
    fn never_up_is_not_an_outage() {
        let v: Vec<Sample> = (1..=5).map(|o| s(o, Outcome::Refused)).collect();
        assert_eq!(outage(&v), None);
    }
}
