//! The access log: one event per request, target `access`.
//!
//! Whether an access event is logged is decided like any other event, by the tracing filter
//! (`RUST_LOG`, changed at run time by `PUT /admin/log-level`); with JSON lines its answer is
//! kept in an [`AccessFilter`], refreshed when the filter changes. How it is written depends
//! on the installed logging:
//! - with JSON lines (the default), its fields are copied into the same [`LineBuffer`] as
//!   every other line, and the writer thread encodes them ([`super::frames`]) into exactly the
//!   line the [`super::json_lines`] layer writes for the equivalent tracing event (a test
//!   compares them), without the generic per-field visitor and key escaping: at one line per
//!   request that generic path was about a fifth of the service's own CPU time, and the
//!   encoding itself most of what remained (`bench/README.md`).
//! - otherwise (text format, or a test's own subscriber), it is an ordinary tracing event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Level;

use super::line_buffer::LineBuffer;

/// The target of access events.
pub const TARGET: &str = "access";

/// One answered request, as logged.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// `INFO`, or `DEBUG` for the steady stream of successful probes and scrapes.
    pub level: Level,
    /// The method as sent.
    pub method: &'a str,
    /// The route label (`unmatched` for unknown paths).
    pub route: &'a str,
    /// The response status.
    pub status: u16,
    /// Time from request head to response head, in microseconds.
    pub latency_micros: u64,
    /// The instance that answered.
    pub instance: &'a str,
    /// The request id (echoed or generated).
    pub request_id: &'a str,
}

impl AccessRecord<'_> {
    /// Latency in milliseconds, microsecond resolution (keeps lines short).
    pub fn latency_ms(&self) -> f64 {
        self.latency_micros as f64 / 1000.0
    }
}

/// How access events are written.
#[derive(Clone, Default)]
pub enum AccessLog {
    /// As a tracing event, formatted by whatever subscriber is installed.
    #[default]
    Tracing,
    /// Encoded directly as a JSON line into the JSON format's line buffer.
    JsonLines {
        /// Where the lines go.
        buffer: LineBuffer,
        /// The filter's answer for access events.
        filter: Arc<AccessFilter>,
    },
}

impl AccessLog {
    /// True if the filter lets access events of `level` through: ask before building a
    /// record.
    pub fn enabled(&self, level: Level) -> bool {
        match self {
            AccessLog::JsonLines { filter, .. } => filter.enabled(level),
            AccessLog::Tracing => ask_tracing(level),
        }
    }

    /// Writes `record`, which [`AccessLog::enabled`] let through.
    pub fn write(&self, record: &AccessRecord<'_>) {
        match self {
            AccessLog::JsonLines { buffer, .. } => buffer.append_access(record),
            AccessLog::Tracing => emit_event(record),
        }
    }
}

/// The tracing filter's answer for access events, kept where a request reads it with one
/// load instead of asking the subscriber stack (a reload lock and directive matching) every
/// time. [`AccessFilter::refresh`] must follow every change of the filter; the logging set-up
/// does it on start and after each reload. Exact because nothing on the request path opens a
/// span, so the answer cannot depend on the span context.
#[derive(Debug, Default)]
pub struct AccessFilter {
    info: AtomicBool,
    debug: AtomicBool,
}

impl AccessFilter {
    /// Asks the installed subscriber again.
    pub fn refresh(&self) {
        self.info.store(ask_tracing(Level::INFO), Ordering::Relaxed);
        self.debug
            .store(ask_tracing(Level::DEBUG), Ordering::Relaxed);
    }

    fn enabled(&self, level: Level) -> bool {
        if level == Level::DEBUG {
            self.debug.load(Ordering::Relaxed)
        } else {
            self.info.load(Ordering::Relaxed)
        }
    }
}

/// Whether the installed subscriber lets an access event of `level` through.
fn ask_tracing(level: Level) -> bool {
    // One `enabled!` per level: each is a callsite whose interest tracing caches (and
    // recomputes when the filter is reloaded).
    if level == Level::DEBUG {
        tracing::enabled!(target: TARGET, Level::DEBUG)
    } else {
        tracing::enabled!(target: TARGET, Level::INFO)
    }
}

/// `record` as a tracing event: the reference for the JSON encoding above.
pub fn emit_event(record: &AccessRecord<'_>) {
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                message = "request",
                method = record.method,
                route = record.route,
                status = record.status,
                latency_ms = record.latency_ms(),
                instance = record.instance,
                request_id = record.request_id,
            )
        };
    }
    if record.level == Level::DEBUG {
        event!(Level::DEBUG);
    } else {
        event!(Level::INFO);
    }
}

/// Records covering the encoder's cases: both levels, latencies from zero to `u64::MAX`, empty
/// strings, and strings that need escaping (quotes, backslashes, a newline, non-ASCII).
#[cfg(test)]
pub(super) fn sample_records() -> [AccessRecord<'static>; 4] {
    [
        AccessRecord {
            level: Level::INFO,
            method: "GET",
            route: "/counter",
            status: 200,
            latency_micros: 21,
            instance: "metrics-app-7c9d-x2",
            request_id: "8ca56073858d49c30000000000000000",
        },
        AccessRecord {
            level: Level::DEBUG,
            method: "HEAD",
            route: "/healthz",
            status: 503,
            latency_micros: 12_345_678,
            instance: "a",
            request_id: "x",
        },
        AccessRecord {
            level: Level::INFO,
            method: "PROPFIND",
            route: "unmatched",
            status: 404,
            latency_micros: 0,
            instance: "host \"quoted\" \\ é 📈",
            request_id: "id\"with\\escapes{}\n",
        },
        AccessRecord {
            level: Level::DEBUG,
            method: "GET",
            route: "/metrics",
            status: 200,
            latency_micros: u64::MAX,
            instance: "",
            request_id: "",
        },
    ]
}
