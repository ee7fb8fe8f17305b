//! The JSON-lines log encoder: one object per event, written by hand.
//!
//! Every request logs one access event, so the access line is encoded as often as the handler
//! runs ([`encode_access`], called by the log writer thread). tracing-subscriber's JSON
//! formatter builds each line through serde and a generic visitor; this encoder appends the
//! same shape of object straight into a reused buffer (`bench/README.md` has the throughput
//! with each). Output per line:
//! `{"timestamp":"…Z","level":"INFO","target":"access","message":"request","route":"/counter",…}`
//! — RFC 3339 UTC timestamp with microseconds, then the event's fields in the order they were
//! recorded. Spans are not logged (the service opens none on the request path).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::access::{self, AccessRecord};
use super::json_text::{
    Escaped, SecondCache, push_escaped, push_escaped_bytes, push_f64, push_json_str, push_millis,
    push_timestamp, push_u64, since_epoch,
};

/// A layer writing every event it sees as one JSON object per line to `W`.
pub struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    /// Lines go to the writers `make_writer` hands out, one `write_all` per line.
    pub fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

thread_local! {
    /// The line being encoded; kept per thread so an event costs no allocation once warm.
    static LINE: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Room reserved before each line: an access line is about 250 bytes, so once warm the
/// appends below never reallocate (they still check, but the check always passes).
const LINE_RESERVE: usize = 512;

/// Per-thread encoding state.
#[derive(Default)]
struct Scratch {
    /// The line being encoded: UTF-8 (only `&str` contents and ASCII are appended).
    line: Vec<u8>,
    /// The timestamp down to the second, reused while the second lasts.
    second: SecondCache,
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        with_scratch(|scratch| {
            encode(event, &mut scratch.line, &mut scratch.second);
            let _ = self
                .make_writer
                .make_writer_for(event.metadata())
                .write_all(&scratch.line);
        });
    }
}

/// Runs `f` with this thread's scratch, its line cleared. A re-entrant event (logging from
/// inside a `Debug` impl being logged), or one logged while the thread is being torn down,
/// gets a fresh one instead of a panic.
fn with_scratch(f: impl FnOnce(&mut Scratch)) {
    let mut f = Some(f);
    let _ = LINE.try_with(|line| {
        if let Ok(mut scratch) = line.try_borrow_mut()
            && let Some(f) = f.take()
        {
            scratch.line.clear();
            f(&mut scratch);
        }
    });
    if let Some(f) = f {
        f(&mut Scratch::default());
    }
}

/// An access record's fields as [`encode_access`] takes them: the strings as their UTF-8
/// bytes, which is how the log writer reads them back from its buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct AccessFields<'a> {
    /// As [`AccessRecord::level`].
    pub level: Level,
    /// As [`AccessRecord::status`].
    pub status: u16,
    /// As [`AccessRecord::latency_micros`].
    pub latency_micros: u64,
    /// [`AccessRecord::method`]'s bytes.
    pub method: &'a [u8],
    /// [`AccessRecord::route`]'s bytes.
    pub route: &'a [u8],
    /// [`AccessRecord::instance`]'s bytes.
    pub instance: &'a [u8],
    /// [`AccessRecord::request_id`]'s bytes.
    pub request_id: &'a [u8],
}

impl<'a> From<&AccessRecord<'a>> for AccessFields<'a> {
    fn from(record: &AccessRecord<'a>) -> Self {
        Self {
            level: record.level,
            status: record.status,
            latency_micros: record.latency_micros,
            method: record.method.as_bytes(),
            route: record.route.as_bytes(),
            instance: record.instance.as_bytes(),
            request_id: record.request_id.as_bytes(),
        }
    }
}

/// Appends an access record, logged at wall-clock time `at`, to `buf` as one JSON object and
/// a newline: the very line [`JsonLines`] writes for the equivalent tracing event
/// ([`access::emit_event`]), encoded from the typed fields.
pub(super) fn encode_access(
    record: &AccessFields<'_>,
    at: Duration,
    buf: &mut Vec<u8>,
    second: &mut SecondCache,
) {
    push_line_start(buf, second, &record.level, access::TARGET, at);
    buf.extend_from_slice(b",\"message\":\"request\",\"method\":\"");
    push_escaped_bytes(buf, record.method);
    buf.extend_from_slice(b"\",\"route\":\"");
    push_escaped_bytes(buf, record.route);
    buf.extend_from_slice(b"\",\"status\":");
    push_u64(buf, record.status.into());
    buf.extend_from_slice(b",\"latency_ms\":");
    push_millis(buf, record.latency_micros);
    buf.extend_from_slice(b",\"instance\":\"");
    push_escaped_bytes(buf, record.instance);
    buf.extend_from_slice(b"\",\"request_id\":\"");
    push_escaped_bytes(buf, record.request_id);
    buf.extend_from_slice(b"\"}\n");
}

/// Appends `event` to `buf` as one JSON object and a newline.
fn encode(event: &Event<'_>, buf: &mut Vec<u8>, second: &mut SecondCache) {
    // Records bridged from the `log` crate carry their real target and level here.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    push_line_start(buf, second, meta.level(), meta.target(), since_epoch());
    event.record(&mut FieldVisitor { buf });
    buf.extend_from_slice(b"}\n");
}

/// Starts a line: `{"timestamp":"…","level":"…","target":"…"`, the fields every line opens
/// with, `at` being the wall-clock time of the event; the caller appends `,"name":value` pairs
/// and closes it.
fn push_line_start(
    buf: &mut Vec<u8>,
    second: &mut SecondCache,
    level: &Level,
    target: &str,
    at: Duration,
) {
    buf.reserve(LINE_RESERVE);
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf, second, at);
    buf.extend_from_slice(b"\",\"level\":\"");
    buf.extend_from_slice(level.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"target\":");
    push_json_str(buf, target);
}

/// Appends each field as `,"name":value`.
struct FieldVisitor<'a> {
    buf: &'a mut Vec<u8>,
}

impl FieldVisitor<'_> {
    /// Starts a field; `false` for the `log.*` fields the bridge adds (already in the header).
    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        self.buf.extend_from_slice(b",\"");
        push_escaped(self.buf, name);
        self.buf.extend_from_slice(b"\":");
        true
    }

    /// Appends a `Display` or `Debug` rendering as a JSON string.
    fn formatted(&mut self, args: fmt::Arguments<'_>) {
        self.buf.push(b'"');
        let _ = Escaped(self.buf).write_fmt(args);
        self.buf.push(b'"');
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            push_json_str(self.buf, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field) {
            push_u64(self.buf, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field) {
            if value < 0 {
                self.buf.push(b'-');
            }
            push_u64(self.buf, value.unsigned_abs());
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field) {
            if value.is_finite() {
                push_f64(self.buf, value);
            } else {
                // JSON has no NaN or infinity.
                self.buf.extend_from_slice(b"null");
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field) {
            let text: &[u8] = if value { b"true" } else { b"false" };
            self.buf.extend_from_slice(text);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.key(field) {
            self.formatted(format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            self.formatted(format_args!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects everything written, for inspection.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Captured;
        fn make_writer(&'w self) -> Captured {
            self.clone()
        }
    }

    /// The lines the layer writes for the events `emit` logs, as written.
    fn raw_lines_of(emit: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(captured.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with('\n'),
            "every line ends with a newline: {text:?}"
        );
        text.lines().map(String::from).collect()
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        raw_lines_of(emit)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn an_access_event_is_one_json_object_with_typed_fields() {
        let lines = lines_of(|| {
            tracing::info!(target: "access", method = "GET", route = "/counter", status = 200u16,
                latency_ms = 0.25, request_id = "abc", "request");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "access");
        assert_eq!(line["message"], "request");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 0.25);
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
            "{timestamp}"
        );
    }

    /// A line without its timestamp value, which differs between two encodings.
    fn without_timestamp(line: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let timestamp = value["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(timestamp).is_ok(), "{timestamp}");
        line.replacen(timestamp, "T", 1)
    }

    #[test]
    fn a_directly_encoded_access_line_is_the_line_of_the_equivalent_tracing_event() {
        for record in access::sample_records() {
            let lines = raw_lines_of(|| access::emit_event(&record));
            assert_eq!(lines.len(), 1);
            let via_tracing = &lines[0];
            let mut direct = Vec::new();
            encode_access(
                &(&record).into(),
                since_epoch(),
                &mut direct,
                &mut SecondCache::default(),
            );
            let direct = String::from_utf8(direct).unwrap();
            assert!(direct.ends_with('\n'));
            // Same bytes, field order included.
            assert_eq!(
                without_timestamp(direct.trim_end()),
                without_timestamp(via_tracing),
                "{record:?}"
            );
        }
    }

    #[test]
    fn strings_debug_values_and_errors_are_escaped_into_valid_json() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é 📈";
        let error = std::io::Error::other("disk \"full\"\n");
        let lines = lines_of(|| {
            tracing::warn!(text = nasty, debug = ?nasty, error = &error as &dyn std::error::Error,
                negative = -3i64, yes = true, nan = f64::NAN, "with {} args", 2);
        });
        let line = &lines[0];
        assert_eq!(line["text"], nasty);
        assert_eq!(line["debug"], format!("{nasty:?}"));
        assert_eq!(line["error"], "disk \"full\"\n");
        assert_eq!(line["negative"], -3);
        assert_eq!(line["yes"], true);
        assert!(line["nan"].is_null());
        assert_eq!(line["message"], "with 2 args");
        assert_eq!(line["level"], "WARN");
    }
}
