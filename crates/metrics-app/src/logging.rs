//! Logging set-up: JSON lines by default, text on request, `RUST_LOG` honoured, and a reload
//! handle so the admin API can change the filter without a restart.
//!
//! Lines go to stdout through a dedicated writer thread that batches them: a request formats
//! its access-log line and hands it over, instead of paying one `write` system call per line.
//! The buffer is bounded and lossless (a request waits rather than a line being dropped).

use std::sync::Arc;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

use crate::config::LogFormat;
use crate::state::LogControl;

/// Installs the global subscriber. Returns the control used by `PUT /admin/log-level`, and a
/// guard that flushes pending lines when dropped (keep it alive until exit).
pub fn init(format: LogFormat) -> (LogControl, WorkerGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_target(true)
            .with_writer(writer.clone())
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(writer.clone())
            .boxed(),
    };
    // A second init (tests) keeps the first subscriber; the control then acts on nothing.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .try_init();
    let control: LogControl = Arc::new(move |directives: &str| {
        let filter =
            EnvFilter::try_new(directives).map_err(|e| format!("invalid log filter: {e}"))?;
        handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))
    });
    (control, guard)
}
