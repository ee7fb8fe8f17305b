//! Logging set-up: tracing-subscriber's JSON formatter (one object per line, for log shippers)
//! or its text formatter, written to stdout through tracing-appender's non-blocking writer, so
//! a request never waits for a `write` system call. The writer is lossless: when stdout falls
//! more than its buffer behind, logging waits instead of dropping lines. `RUST_LOG` sets the
//! filter, and [`LogControl`] changes it at run time (`PUT /admin/log-level`) once
//! [`parse_filter`] has accepted the new one.

use std::sync::Arc;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

use crate::config::LogFormat;

/// Replaces the log filter at run time. Built by [`init`]; tests may supply their own.
pub type LogControl = Arc<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Targets that something in this process logs under (or under a module of); a filter directive
/// naming any other target enables nothing, which is almost always a typo (`debgu`).
const KNOWN_TARGETS: [&str; 9] = [
    "metrics_app",
    "access",
    "axum",
    "tower_http",
    "hyper",
    "hyper_util",
    "redis",
    "tokio",
    "governor",
];

/// Installs the global subscriber. Returns the filter control and a guard that writes the
/// pending lines when dropped (keep it alive until exit). A second call (tests) keeps the
/// first subscriber, and its control then changes nothing.
pub fn init(format: LogFormat) -> (LogControl, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let formatter = match format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(formatter)
        .try_init();
    let control: LogControl = Arc::new(move |filter| {
        handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    });
    (control, guard)
}

/// Why a new log filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FilterRejected {
    /// Empty, too long, or with control characters (a stray newline).
    #[error(
        "the body must be one line of at most 512 characters, a log filter such as `debug` or `metrics_app=trace,info`"
    )]
    Malformed,
    /// Not valid `RUST_LOG` syntax.
    #[error("invalid log filter: {0}")]
    Syntax(String),
    /// A directive names a target nothing here logs under.
    #[error(
        "the filter names the target `{0}`, under which nothing here logs, so it would enable nothing; known targets: {targets}, or give a level alone such as `debug`",
        targets = KNOWN_TARGETS.join(", ")
    )]
    UnknownTarget(String),
    /// The filter would silence every line, the audit line of its own change included.
    #[error("the filter would silence every log line; the quietest useful filter is `error`")]
    Silent,
}

/// Checks a filter proposed at run time and builds it. Refuses filters that would enable
/// nothing: they would silence the service, and the record of who silenced it.
pub(crate) fn parse_filter(directives: &str) -> Result<EnvFilter, FilterRejected> {
    let directives = directives.trim();
    if directives.is_empty() || directives.len() > 512 || directives.chars().any(char::is_control) {
        return Err(FilterRejected::Malformed);
    }
    // A bare level enables something; a directive with a target only if the target is ours.
    let unknown = directives
        .split(',')
        .map(str::trim)
        .filter(|d| d.parse::<LevelFilter>().is_err())
        .map(|d| d.split(['[', '=']).next().unwrap_or_default().trim())
        .find(|target| {
            let krate = target.split("::").next().unwrap_or_default();
            !target.is_empty() && !KNOWN_TARGETS.contains(&krate)
        });
    if let Some(target) = unknown {
        return Err(FilterRejected::UnknownTarget(target.to_string()));
    }
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| FilterRejected::Syntax(e.to_string()))?;
    if filter.max_level_hint() == Some(LevelFilter::OFF) {
        return Err(FilterRejected::Silent);
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn levels_and_known_targets_are_accepted() {
        for ok in [
            "debug",
            "warn",
            "metrics_app=trace,info",
            "access=info,warn",
            "metrics_app::http=debug",
            " info ",
        ] {
            assert!(parse_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn filters_that_enable_nothing_are_refused_with_the_reason() {
        assert_eq!(
            parse_filter("debgu").unwrap_err(),
            FilterRejected::UnknownTarget("debgu".into())
        );
        assert_eq!(
            parse_filter("metrics_app:debug").unwrap_err(),
            FilterRejected::UnknownTarget("metrics_app:debug".into())
        );
        assert_eq!(parse_filter("off").unwrap_err(), FilterRejected::Silent);
        assert_eq!(
            parse_filter("info\nwarn").unwrap_err(),
            FilterRejected::Malformed
        );
        assert_eq!(parse_filter("").unwrap_err(), FilterRejected::Malformed);
        assert!(matches!(
            parse_filter("metrics_app=loud"),
            Err(FilterRejected::Syntax(_))
        ));
    }
}
