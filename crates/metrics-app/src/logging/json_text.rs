//! Writing JSON text by hand into a byte buffer: strings with escaping, numbers exactly as
//! Rust formats them, RFC 3339 timestamps. The pieces [`super::json_lines`] assembles lines
//! from, kept apart so each can be checked against the reference it imitates.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS` of one Unix second: formatting a calendar date once a second
/// instead of once a line.
#[derive(Default)]
pub(super) struct SecondCache {
    unix_seconds: u64,
    formatted: String,
}

/// Wall-clock time for a line's timestamp.
pub(super) fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Appends `since_epoch` as an RFC 3339 UTC timestamp with microseconds,
/// `2026-11-23T08:45:39.123456Z`, the same text as `humantime::format_rfc3339_micros`.
pub(super) fn push_timestamp(buf: &mut Vec<u8>, second: &mut SecondCache, since_epoch: Duration) {
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

/// Appends `value` as a quoted JSON string.
pub(super) fn push_json_str(buf: &mut Vec<u8>, value: &str) {
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
pub(super) fn push_escaped(buf: &mut Vec<u8>, value: &str) {
    push_escaped_bytes(buf, value.as_bytes());
}

/// [`push_escaped`] for the bytes of a string (UTF-8 in, UTF-8 out), as the log writer reads
/// them back from its buffer.
pub(super) fn push_escaped_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
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
pub(super) fn push_u64(buf: &mut Vec<u8>, value: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `micros / 1000` as `{}` writes the `f64` milliseconds, without the float: below
/// 10^12 µs (11 days) the exact decimal has at most 12 significant digits, so it is the
/// shortest one that round-trips (`push_f64`'s short cut, by the same argument).
pub(super) fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    if micros < 1_000_000_000_000 {
        push_thousandths(buf, micros);
    } else {
        push_f64(buf, micros as f64 / 1000.0);
    }
}

/// Appends `value` exactly as `{value}` would, taking a short cut for the common case of a
/// non-negative number with at most three decimals (latencies in milliseconds from whole
/// microseconds): if `m / 1000` reproduces `value` bit for bit, the shortest decimal that
/// round-trips is `m / 1000` itself with trailing zeros dropped.
pub(super) fn push_f64(buf: &mut Vec<u8>, value: f64) {
    if value.is_sign_positive() && value < 1e9 {
        let thousandths = (value * 1000.0).round();
        if thousandths / 1000.0 == value {
            return push_thousandths(buf, thousandths as u64);
        }
    }
    let _ = write!(buf, "{value}");
}

/// Appends `m / 1000` in decimal, without trailing zeros (and without the point for whole
/// numbers).
fn push_thousandths(buf: &mut Vec<u8>, m: u64) {
    push_u64(buf, m / 1000);
    let mut fraction = m % 1000;
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

/// A `fmt::Write` that escapes what is written into it, for `Debug` and `Display` values.
pub(super) struct Escaped<'a>(pub(super) &'a mut Vec<u8>);

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
}
