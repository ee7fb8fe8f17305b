//! Logging set-up: JSON lines by default, text on request, `RUST_LOG` honoured, and a reload
//! handle so the admin API can change the filter without a restart.
//!
//! Lines go to stdout through [`line_buffer`]: a request copies its access record into a
//! shared buffer that a writer thread encodes and writes in batches ([`frames`]), instead of
//! encoding the line and paying a `write` system call for it on the request path. The buffer
//! is bounded and lossless (a request waits rather than a line being dropped). JSON lines are
//! encoded by [`json_lines`] from the pieces in [`json_text`] ([`access`] decides which access
//! events are logged and how), text by tracing-subscriber's formatter.

pub mod access;
mod frames;
pub mod json_lines;
pub mod json_text;
pub mod line_buffer;

use std::sync::Arc;

use access::{AccessFilter, AccessLog};
use line_buffer::{FlushGuard, LineBuffer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

use crate::config::LogFormat;
use crate::state::LogControl;

/// What the service needs from the installed logging.
#[derive(Clone)]
pub struct Logging {
    /// Changes the filter at run time (`PUT /admin/log-level`).
    pub control: LogControl,
    /// How access events are written.
    pub access: AccessLog,
}

/// Installs the global subscriber. Returns the handles the service needs, and a guard that
/// flushes pending lines when dropped (keep it alive until exit).
///
/// Fails only if the writer thread cannot be started.
pub fn init(format: LogFormat) -> std::io::Result<(Logging, FlushGuard)> {
    let (writer, guard) = LineBuffer::start(std::io::stdout())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let access_filter = Arc::new(AccessFilter::default());
    let (fmt_layer, access) = match format {
        LogFormat::Json => (
            json_lines::JsonLines::new(writer.clone()).boxed(),
            AccessLog::JsonLines {
                buffer: writer,
                filter: access_filter.clone(),
            },
        ),
        LogFormat::Text => (
            tracing_subscriber::fmt::layer()
                .with_target(true)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_writer(writer)
                .boxed(),
            AccessLog::Tracing,
        ),
    };
    // A second init (tests) keeps the first subscriber; the control then acts on nothing.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .try_init();
    access_filter.refresh();
    let control: LogControl = Arc::new(move |directives: &str| {
        let filter =
            EnvFilter::try_new(directives).map_err(|e| format!("invalid log filter: {e}"))?;
        handle
            .reload(filter)
            .map_err(|e| format!("cannot change the log filter: {e}"))?;
        access_filter.refresh();
        Ok(())
    });
    Ok((Logging { control, access }, guard))
}
