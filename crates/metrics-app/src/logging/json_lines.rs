//! The JSON-lines log encoder: one object per event, written by hand.
//!
//! Every request logs one access event, so this runs as often as the handler does.
//! tracing-subscriber's JSON formatter builds each line through serde and a generic visitor;
//! this encoder appends the same shape of object straight into a reused per-thread buffer
//! (`bench/README.md` has the throughput with each). Output per line:
//! `{"timestamp":"…Z","level":"INFO","target":"access","message":"request","route":"/counter",…}`
//! — RFC 3339 UTC timestamp with microseconds, then the event's fields in the order they were
//! recorded. Spans are not logged (the service opens none on the request path).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

use super::access::{self, AccessRecord};
use super::line_buffer::LineBuffer;

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

/// `YYYY-MM-DDTHH:MM:SS` of one Unix second: formatting a calendar date once a second
/// instead of once a line.
#[derive(Default)]
struct SecondCache {
    unix_seconds: u64,
    formatted: String,
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

/// Writes `record` as one line to `buffer`: the very line [`JsonLines`] writes for the
/// equivalent tracing event ([`access::emit_event`]), encoded from the typed fields.
pub(crate) fn write_access_line(record: &AccessRecord<'_>, buffer: &LineBuffer) {
    with_scratch(|scratch| {
        encode_access(record, &mut scratch.line, &mut scratch.second);
        buffer.append(&scratch.line, false);
    });
}

/// Appends `record` to `buf` as one JSON object and a newline (see [`write_access_line`]).
fn encode_access(record: &AccessRecord<'_>, buf: &mut Vec<u8>, second: &mut SecondCache) {
    buf.reserve(LINE_RESERVE);
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf, second, since_epoch());
    buf.extend_from_slice(b"\",\"level\":\"");
    buf.extend_from_slice(record.level.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"target\":\"");
    push_escaped(buf, access::TARGET);
    buf.extend_from_slice(b"\",\"message\":\"request\",\"method\":\"");
    push_escaped(buf, record.method);
    buf.extend_from_slice(b"\",\"route\":\"");
    push_escaped(buf, record.route);
    buf.extend_from_slice(b"\",\"status\":");
    push_u64(buf, record.status.into());
    buf.extend_from_slice(b",\"latency_ms\":");
    push_millis(buf, record.latency_micros);
    buf.extend_from_slice(b",\"instance\":\"");
    push_escaped(buf, record.instance);
    buf.extend_from_slice(b"\",\"request_id\":\"");
    push_escaped(buf, record.request_id);
    buf.extend_from_slice(b"\"}\n");
}

/// Wall-clock time for a line's timestamp.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Appends `event` to `buf` as one JSON object and a newline.
fn encode(event: &Event<'_>, buf: &mut Vec<u8>, second: &mut SecondCache) {
    buf.reserve(LINE_RESERVE);
    // Records bridged from the `log` crate carry their real target and level here.
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    buf.extend_from_slice(b"{\"timestamp\":\"");
    push_timestamp(buf, second, since_epoch());
    buf.extend_from_slice(b"\",\"level\":\"");
    buf.extend_from_slice(meta.level().as_str().as_bytes());
    buf.extend_from_slice(b"\",\"target\":");
    push_json_str(buf, meta.target());
    event.record(&mut FieldVisitor { buf });
    buf.extend_from_slice(b"}\n");
}

/// Appends `since_epoch` as an RFC 3339 UTC timestamp with microseconds,
/// `2026-11-23T08:45:39.123456Z`, the same text as `humantime::format_rfc3339_micros`.
fn push_timestamp(buf: &mut Vec<u8>, second: &mut SecondCache, since_epoch: Duration) {
    let unix_seconds = since_epoch.as_secs();
    if second.formatted.is_empty() || second.unix_seconds != unix_seconds {
        second.formatted.clear();
        let whole_second = UNIX_EPOCH + Duration::from_secs(unix_seconds);
        let _ = write!(
            second.formatted,
            "{}",
            humantime::format_rfc3339_seconds(whole_second)
        );
        second.formatted.pop(); // the trailing 'Z': the fraction goes before it
        second.unix_seconds = unix_seconds;
    }
    buf.extend_from_slice(second.formatted.as_bytes());
    let mut micros = since_epoch.subsec_micros();
    let mut fraction = *b".000000Z";
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf.extend_from_slice(&fraction);
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

/// Appends `value` as a quoted JSON string.
fn push_json_str(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    push_escaped(buf, value);
    buf.push(b'"');
}

/// Appends `value` with JSON string escaping (RFC 8259 §7).
///
/// Almost every value (routes, ids, names) needs no escaping, and most are a few bytes
/// long: each is checked and copied eight bytes per step, with no call into `memcpy` (whose
/// set-up costs more than such strings). The short tail is gathered into a word padded with
/// spaces (which need no escaping), checked the same way and stored whole, and the length is
/// then cut back. The first word that needs escaping hands over to [`push_escaped_slow`].
fn push_escaped(buf: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut done = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
            return push_escaped_slow(buf, &bytes[done..]);
        }
        buf.extend_from_slice(&word);
        done += 8;
    }
    let tail = chunks.remainder();
    if tail.is_empty() {
        return;
    }
    let mut word = [b' '; 8];
    for (to, from) in word.iter_mut().zip(tail) {
        *to = *from;
    }
    if word_needs_escape(u64::from_le_bytes(word)) {
        return push_escaped_slow(buf, tail);
    }
    let end = buf.len() + tail.len();
    buf.extend_from_slice(&word);
    buf.truncate(end);
}

/// [`push_escaped`] from the first word or byte with something to escape. Works on bytes, as
/// `rest` may start inside a multi-byte character: escapes are ASCII and every other byte is
/// copied as it is, so the output stays UTF-8.
fn push_escaped_slow(buf: &mut Vec<u8>, rest: &[u8]) {
    let mut run_start = 0;
    for (i, &byte) in rest.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        buf.extend_from_slice(&rest[run_start..i]);
        match byte {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(byte >> 4)]);
                buf.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        run_start = i + 1;
    }
    buf.extend_from_slice(&rest[run_start..]);
}

/// True for the bytes JSON strings cannot hold as they are: `"`, `\` and control characters.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// [`needs_escape`] for any of the eight bytes of `x` (the classic SWAR tests "has a byte
/// less than n" and "has a zero byte", both exact for any-ness).
fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
        || has_zero_byte(x ^ (ONES * u64::from(b'"')))
        || has_zero_byte(x ^ (ONES * u64::from(b'\\')))
}

/// Appends `value` in decimal.
fn push_u64(buf: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[start..]);
}

/// Appends `micros / 1000` as `{}` writes the `f64` milliseconds, without the float: below
/// 10^12 µs (11 days) the exact decimal has at most 12 significant digits, so it is the
/// shortest one that round-trips (`push_f64`'s short cut, by the same argument).
fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    if micros >= 1_000_000_000_000 {
        return push_f64(buf, micros as f64 / 1000.0);
    }
    push_u64(buf, micros / 1000);
    let mut fraction = micros % 1000;
    if fraction != 0 {
        buf.push(b'.');
        let mut divisor = 100;
        while fraction != 0 {
            buf.push(b'0' + (fraction / divisor) as u8);
            fraction %= divisor;
            divisor /= 10;
        }
    }
}

/// Appends `value` exactly as `{value}` would, taking a short cut for the common case of a
/// non-negative number with at most three decimals (latencies in milliseconds from whole
/// microseconds): if `m / 1000` reproduces `value` bit for bit, the shortest decimal that
/// round-trips is `m / 1000` itself with trailing zeros dropped.
fn push_f64(buf: &mut Vec<u8>, value: f64) {
    if value.is_sign_positive() && value < 1e9 {
        let thousandths = (value * 1000.0).round();
        if thousandths / 1000.0 == value {
            let thousandths = thousandths as u64;
            push_u64(buf, thousandths / 1000);
            let mut fraction = thousandths % 1000;
            if fraction != 0 {
                buf.push(b'.');
                let mut divisor = 100;
                while fraction != 0 {
                    buf.push(b'0' + (fraction / divisor) as u8);
                    fraction %= divisor;
                    divisor /= 10;
                }
            }
            return;
        }
    }
    let _ = write!(buf, "{value}");
}

/// A `fmt::Write` that escapes what is written into it, for `Debug` and `Display` values.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
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
        let records = [
            AccessRecord {
                level: tracing::Level::INFO,
                method: "GET",
                route: "/counter",
                status: 200,
                latency_micros: 21,
                instance: "metrics-app-7c9d-x2",
                request_id: "8ca56073858d49c30000000000000000",
            },
            AccessRecord {
                level: tracing::Level::DEBUG,
                method: "HEAD",
                route: "/healthz",
                status: 503,
                latency_micros: 12_345_678,
                instance: "a",
                request_id: "x",
            },
            AccessRecord {
                level: tracing::Level::INFO,
                method: "PROPFIND",
                route: "unmatched",
                status: 404,
                latency_micros: 0,
                instance: "host \"quoted\" \\ é",
                request_id: "id\"with\\escapes{}",
            },
        ];
        for record in records {
            let lines = raw_lines_of(|| access::emit_event(&record));
            assert_eq!(lines.len(), 1);
            let via_tracing = &lines[0];
            let mut direct = Vec::new();
            encode_access(&record, &mut direct, &mut SecondCache::default());
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
    fn timestamps_match_rfc3339_with_microseconds_across_second_boundaries() {
        let mut cache = SecondCache::default();
        // Within one second (cache reused), the next second, a leap day, far past and future.
        for (seconds, micros) in [
            (1_795_424_739, 0),
            (1_795_424_739, 123_456),
            (1_795_424_739, 999_999),
            (1_795_424_740, 7),
            (1_709_164_800, 500_000),
            (0, 1),
            (4_102_444_799, 999_999),
        ] {
            let since_epoch = Duration::new(seconds, micros * 1000);
            let mut ours = Vec::new();
            push_timestamp(&mut ours, &mut cache, since_epoch);
            let expected = humantime::format_rfc3339_micros(UNIX_EPOCH + since_epoch).to_string();
            assert_eq!(String::from_utf8(ours).unwrap(), expected);
        }
    }

    #[test]
    fn numbers_are_written_as_rust_formats_them() {
        let mut samples: Vec<f64> = (0..200_000u32).map(|us| f64::from(us) / 1000.0).collect();
        samples.extend([
            0.1 + 0.2,
            1e-7,
            123_456.789,
            999_999_999.999,
            1e9,
            2.5e15,
            -0.25,
            -0.0,
            1.0 / 3.0,
        ]);
        for value in samples {
            let mut ours = Vec::new();
            push_f64(&mut ours, value);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                format!("{value}"),
                "f64 {value:?}"
            );
        }
        // Every latency up to 0.2 s, a spread of larger ones (a fixed LCG), and the edges.
        let spread = (0..10_000u64).scan(1u64, |x, _| {
            *x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            Some(*x % 1_000_000_000_000)
        });
        let edges = [999_999_999_999, 1_000_000_000_000, 1 << 53, u64::MAX];
        for micros in (0..200_000).chain(spread).chain(edges) {
            let mut ours = Vec::new();
            push_millis(&mut ours, micros);
            let expected = format!("{}", micros as f64 / 1000.0);
            assert_eq!(String::from_utf8(ours).unwrap(), expected, "{micros} µs");
        }
        for value in [0, 7, 10, 200, 503, 4_294_967_296, u64::MAX] {
            let mut ours = Vec::new();
            push_u64(&mut ours, value);
            assert_eq!(String::from_utf8(ours).unwrap(), value.to_string());
        }
    }

    /// The escaping rule spelled out byte by byte, to check the word-at-a-time version.
    fn escaped_reference(value: &str) -> String {
        let mut out = String::new();
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out
    }

    fn escaped(value: &str) -> String {
        let mut buf = Vec::new();
        push_escaped(&mut buf, value);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn escaping_agrees_with_the_byte_rule_at_every_position_and_length() {
        let base = "abcdefghijklmnopqrstuvwxyz-é📈";
        assert_eq!(escaped(base), base);
        for length in 0..=17 {
            let clean = "x".repeat(length);
            assert_eq!(escaped(&clean), clean);
            for position in 0..length {
                for special in ["\"", "\\", "\u{0}", "\u{1f}"] {
                    let mut dirty = clean.clone();
                    dirty.replace_range(position..=position, special);
                    assert_eq!(escaped(&dirty), escaped_reference(&dirty), "{dirty:?}");
                }
            }
        }
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}', 'ÿ'] {
            for position in 0..=base.len() {
                if !base.is_char_boundary(position) {
                    continue;
                }
                let mut text = base.to_string();
                text.insert(position, special);
                assert_eq!(escaped(&text), escaped_reference(&text), "{text:?}");
                let json = format!("\"{}\"", escaped(&text));
                assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
            }
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
