//! What the log buffer holds between a logger and the writer thread: a sequence of frames,
//! each either a finished line or an access record still to be encoded.
//!
//! Every request logs an access line, and encoding it (timestamp, escaping, numbers) is most of
//! what logging costs. A request only copies the record's fields into the buffer, as an
//! access frame; the writer thread encodes a whole batch of them at once, off the request path,
//! into exactly the line [`super::json_lines`] writes for the equivalent tracing event (the
//! record is taken apart and handed to the same encoder, and a test compares the bytes).
//! Frames keep the order they were appended in, so lines and access records of one thread come
//! out in the order they were logged.
//!
//! Layout, integers little-endian:
//! - text frame: `1`, length `u32`, the bytes;
//! - access frame: `2`, level `u8`, status `u16`, latency in µs `u64`, wall-clock time
//!   (seconds `u64`, nanoseconds `u32`), then method, route, instance and request id, each as
//!   length `u32` and UTF-8 bytes.

use std::time::Duration;

use tracing::Level;

use super::access::AccessRecord;
use super::json_lines::{AccessFields, encode_access};
use super::json_text::SecondCache;

const TEXT: u8 = 1;
const ACCESS: u8 = 2;

/// Appends `bytes` (whole lines) as a text frame.
pub(super) fn push_text(frames: &mut Vec<u8>, bytes: &[u8]) {
    frames.push(TEXT);
    push_len(frames, bytes.len());
    frames.extend_from_slice(bytes);
}

/// Appends `record`, logged at wall-clock time `at` (since the Unix epoch), as an access frame.
pub(super) fn push_access(frames: &mut Vec<u8>, record: &AccessRecord<'_>, at: Duration) {
    frames.push(ACCESS);
    frames.push(level_code(record.level));
    frames.extend_from_slice(&record.status.to_le_bytes());
    frames.extend_from_slice(&record.latency_micros.to_le_bytes());
    frames.extend_from_slice(&at.as_secs().to_le_bytes());
    frames.extend_from_slice(&at.subsec_nanos().to_le_bytes());
    for text in [
        record.method,
        record.route,
        record.instance,
        record.request_id,
    ] {
        push_len(frames, text.len());
        frames.extend_from_slice(text.as_bytes());
    }
}

/// Appends what `frames` stand for to `out`: text as it is, access records as JSON lines.
/// Stops at the first frame that is cut short or unknown (none is, as long as frames are only
/// made by the functions above), keeping everything before it.
pub(super) fn render(frames: &[u8], out: &mut Vec<u8>, second: &mut SecondCache) {
    let mut reader = Reader { rest: frames };
    while let Some(tag) = reader.u8() {
        let whole = match tag {
            TEXT => reader
                .text_bytes()
                .map(|bytes| out.extend_from_slice(bytes)),
            ACCESS => reader
                .access()
                .map(|(record, at)| encode_access(&record, at, out, second)),
            _ => None,
        };
        if whole.is_none() {
            return;
        }
    }
}

fn push_len(frames: &mut Vec<u8>, len: usize) {
    // A single line or field of 4 GiB is not a log line; cut it rather than misframe it.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    frames.extend_from_slice(&len.to_le_bytes());
}

fn level_code(level: Level) -> u8 {
    match level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

fn level_of(code: u8) -> Option<Level> {
    Some(match code {
        0 => Level::TRACE,
        1 => Level::DEBUG,
        2 => Level::INFO,
        3 => Level::WARN,
        4 => Level::ERROR,
        _ => return None,
    })
}

/// Takes frames apart; every read is checked, so a short buffer ends in `None`, never a panic.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn text_bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(usize::try_from(len).ok()?)
    }

    fn access(&mut self) -> Option<(AccessFields<'a>, Duration)> {
        let level = level_of(self.u8()?)?;
        let status = u16::from_le_bytes(self.array()?);
        let latency_micros = u64::from_le_bytes(self.array()?);
        let seconds = u64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        // Written from `&str`s by `push_access`: UTF-8 without checking again.
        let record = AccessFields {
            level,
            status,
            latency_micros,
            method: self.text_bytes()?,
            route: self.text_bytes()?,
            instance: self.text_bytes()?,
            request_id: self.text_bytes()?,
        };
        Some((record, Duration::new(seconds, nanos)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::access::sample_records;
    use super::*;

    /// The lines the records and texts stand for, encoded one by one.
    fn expected(entries: &[(Option<AccessRecord<'_>>, &[u8])], at: Duration) -> Vec<u8> {
        let mut lines = Vec::new();
        for (record, text) in entries {
            match record {
                Some(record) => {
                    encode_access(&record.into(), at, &mut lines, &mut SecondCache::default())
                }
                None => lines.extend_from_slice(text),
            }
        }
        lines
    }

    #[test]
    fn frames_render_to_the_same_lines_in_the_same_order() {
        let at = Duration::new(1_795_000_000, 123_456_789);
        let [a, b, c, d] = sample_records();
        let entries: [(Option<AccessRecord<'_>>, &[u8]); 7] = [
            (None, b"first line\n"),
            (Some(a), b""),
            (Some(b), b""),
            (None, b""),
            (None, b"two\nlines \x00 with a NUL\n"),
            (Some(c), b""),
            (Some(d), b""),
        ];
        let mut frames = Vec::new();
        for (record, text) in &entries {
            match record {
                Some(record) => push_access(&mut frames, record, at),
                None => push_text(&mut frames, text),
            }
        }
        let mut rendered = Vec::new();
        render(&frames, &mut rendered, &mut SecondCache::default());
        assert_eq!(
            String::from_utf8(rendered).unwrap(),
            String::from_utf8(expected(&entries, at)).unwrap()
        );
    }

    #[test]
    fn a_cut_or_unknown_frame_ends_rendering_without_losing_what_came_before() {
        let at = Duration::from_secs(1);
        let [a, ..] = sample_records();
        let mut frames = Vec::new();
        push_text(&mut frames, b"kept\n");
        let whole = frames.len();
        push_access(&mut frames, &a, at);
        for cut in whole..frames.len() {
            let mut rendered = Vec::new();
            render(&frames[..cut], &mut rendered, &mut SecondCache::default());
            assert_eq!(rendered, b"kept\n", "cut at {cut}");
        }
        let mut unknown = frames[..whole].to_vec();
        unknown.extend_from_slice(&[9, 0, 0, 0]);
        let mut rendered = Vec::new();
        render(&unknown, &mut rendered, &mut SecondCache::default());
        assert_eq!(rendered, b"kept\n");
    }

    #[test]
    fn every_level_survives_its_code() {
        for level in [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ] {
            assert_eq!(level_of(level_code(level)), Some(level));
        }
        assert_eq!(level_of(5), None);
    }
}
