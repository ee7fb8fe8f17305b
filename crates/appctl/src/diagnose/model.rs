//! The evidence and findings a diagnosis is made of, shared by the probes, the analyses and
//! the report. The JSON shape of these types is the documented `--output json` format
//! (docs/diagnose.md): add fields, never rename or remove them.

use serde::Serialize;

/// How one HTTP request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// A response arrived with this status.
    Status {
        /// HTTP status code.
        code: u16,
    },
    /// No complete response within the per-request timeout (evidence, not a tool failure).
    Timeout,
    /// The connection was refused: nothing listens there.
    Refused,
    /// The connection was reset or closed before a response.
    Reset,
    /// The hostname did not resolve.
    Dns {
        /// What the resolver reported.
        message: String,
    },
    /// The TLS handshake failed (or TLS was needed and is not available).
    Tls {
        /// What the TLS layer reported.
        message: String,
    },
    /// Any other transport error.
    Error {
        /// What the HTTP client reported.
        message: String,
    },
}

impl Outcome {
    /// A 2xx or 3xx answer.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Status { code } if *code < 400)
    }

    /// A 5xx answer.
    pub fn is_server_error(&self) -> bool {
        matches!(self, Self::Status { code } if *code >= 500)
    }

    /// 502, 503 or 504: what a proxy answers when the backend is gone or unready.
    pub fn is_gateway_error(&self) -> bool {
        matches!(self, Self::Status { code: 502..=504 })
    }

    /// A 4xx answer: the server says the request itself is wrong.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Status { code: 400..=499 })
    }

    /// Refused, reset, DNS, TLS or another transport error (not a timeout).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Self::Refused | Self::Reset | Self::Dns { .. } | Self::Tls { .. } | Self::Error { .. }
        )
    }

    /// No HTTP answer at all (a transport error or a timeout).
    pub fn is_failure(&self) -> bool {
        !matches!(self, Self::Status { .. })
    }

    /// For a failure, what it means for people: `connection refused (nothing listens on the
    /// port)`, `name did not resolve: …`.
    pub fn explain(&self) -> Option<String> {
        Some(match self {
            Self::Status { .. } => return None,
            Self::Timeout => "no complete answer within the per-request timeout".into(),
            Self::Refused => "connection refused: nothing listens on that address and port".into(),
            Self::Reset => "connection reset or closed by the server before an answer".into(),
            Self::Dns { message } => format!("the hostname did not resolve ({message})"),
            Self::Tls { message } => format!("TLS failed ({message})"),
            Self::Error { message } => message.clone(),
        })
    }

    /// Short text for tables: `200`, `timeout`, `refused`, …
    pub fn label(&self) -> String {
        match self {
            Self::Status { code } => code.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Refused => "refused".into(),
            Self::Reset => "reset".into(),
            Self::Dns { .. } => "dns".into(),
            Self::Tls { .. } => "tls".into(),
            Self::Error { .. } => "error".into(),
        }
    }
}

/// One probe request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// 1-based position in the order requests were started.
    pub ordinal: usize,
    /// Milliseconds from the start of the probe to the start of this request.
    pub start_ms: f64,
    /// Milliseconds until the response was complete (the timeout, for a timed-out request).
    pub latency_ms: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// `N` from a body like `Counter value: N`.
    pub counter: Option<u64>,
    /// The answering instance, from the instance header.
    pub instance: Option<String>,
}

/// How serious a finding is; findings are reported most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Degrades the service.
    Medium,
    /// Users are hurt now.
    High,
    /// The service is down or being killed.
    Critical,
}

/// The documented set of finding kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Every Nth request is slow.
    PeriodicLatency,
    /// Latency grows with the number of requests served.
    LatencyTrend,
    /// Some requests are far slower than the rest, with no period.
    SlowOutliers,
    /// 5xx answers.
    ServerErrors,
    /// Mostly 4xx answers: the URL, the method or the credentials are wrong for this server.
    ClientErrors,
    /// The service stopped answering while its port still accepts connections.
    Hung,
    /// A health endpoint says healthy while the target fails.
    ProbeBlind,
    /// A health endpoint fails while the target works.
    ProbeFalseAlarm,
    /// The saturation ramp found where throughput stops growing.
    Saturation,
    /// The service stopped answering during the probe.
    Unavailable,
    /// The counter went back to a small value: a restart lost its state.
    CounterReset,
    /// Values repeat or go backwards across instances: replicas count independently.
    CounterInconsistent,
    /// One instance is slow or failing while the others are fine.
    InstanceSkew,
    /// Memory grows with every request.
    MemoryGrowth,
    /// A container uses 90 % or more of its memory limit.
    MemoryNearLimit,
    /// The target started child processes during the probe.
    ChildProcesses,
    /// A container was killed for exceeding its memory limit.
    OomKilled,
    /// Containers or the process restarted.
    Restarts,
}

impl Kind {
    /// The kebab-case name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeriodicLatency => "periodic-latency",
            Self::LatencyTrend => "latency-trend",
            Self::SlowOutliers => "slow-outliers",
            Self::ServerErrors => "server-errors",
            Self::ClientErrors => "client-errors",
            Self::Hung => "hung",
            Self::ProbeBlind => "probe-blind",
            Self::ProbeFalseAlarm => "probe-false-alarm",
            Self::Saturation => "saturation",
            Self::Unavailable => "unavailable",
            Self::CounterReset => "counter-reset",
            Self::CounterInconsistent => "counter-inconsistent",
            Self::InstanceSkew => "instance-skew",
            Self::MemoryGrowth => "memory-growth",
            Self::MemoryNearLimit => "memory-near-limit",
            Self::ChildProcesses => "child-processes",
            Self::OomKilled => "oom-killed",
            Self::Restarts => "restarts",
        }
    }
}

/// One conclusion, with what supports it, the likely cause and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What was found.
    pub kind: Kind,
    /// How bad it is.
    pub severity: Severity,
    /// One line for people.
    pub title: String,
    /// The observations that support it.
    pub evidence: Vec<String>,
    /// The most likely cause.
    pub cause: String,
    /// The suggested fix.
    pub fix: String,
    /// For findings from the HTTP evidence: how many requests had been sent when the probe
    /// first showed this finding (the speed of the diagnosis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub named_at_request: Option<usize>,
    /// Kind-specific fields (e.g. `period`, `phase`, `slow_ms`, `fast_ms`), flattened into the
    /// finding's JSON object.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Finding {
    /// A finding without kind-specific fields.
    pub fn new(kind: Kind, severity: Severity, title: impl Into<String>) -> Self {
        Self {
            kind,
            severity,
            title: title.into(),
            evidence: Vec::new(),
            cause: String::new(),
            fix: String::new(),
            named_at_request: None,
            details: serde_json::Map::new(),
        }
    }

    /// Adds one line of evidence.
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }

    /// Sets the likely cause and the suggested fix.
    pub fn cause_and_fix(mut self, cause: impl Into<String>, fix: impl Into<String>) -> Self {
        self.cause = cause.into();
        self.fix = fix.into();
        self
    }

    /// Adds a kind-specific field.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// Formats milliseconds for people: `7 ms`, `1.25 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_match_the_json_names() {
        for k in [
            Kind::PeriodicLatency,
            Kind::LatencyTrend,
            Kind::SlowOutliers,
            Kind::ServerErrors,
            Kind::ClientErrors,
            Kind::Hung,
            Kind::ProbeBlind,
            Kind::ProbeFalseAlarm,
            Kind::Saturation,
            Kind::Unavailable,
            Kind::CounterReset,
            Kind::CounterInconsistent,
            Kind::InstanceSkew,
            Kind::MemoryGrowth,
            Kind::MemoryNearLimit,
            Kind::ChildProcesses,
            Kind::OomKilled,
            Kind::Restarts,
        ] {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::from(k.as_str()))
            );
        }
    }
}
