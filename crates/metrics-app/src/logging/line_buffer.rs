//! Log lines to stdout in batches, written by a dedicated thread.
//!
//! Every request logs a line. Writing each one with its own `write` system call, or handing
//! each one to a writer thread as its own allocation through a channel (what
//! `tracing_appender::non_blocking` does), costs more than encoding it. Here a line, or an
//! access record still to be encoded ([`frames`]), is copied into one shared buffer under a
//! short lock; the writer thread takes the whole buffer when it passes [`WAKE_WRITER_AT`]
//! bytes or every [`FLUSH_EVERY`], whichever comes first, encodes the access records in it,
//! and writes the lot with one call. Warnings and errors wake the writer at once: they are
//! what someone may be watching for.
//!
//! Lossless with bounded memory: past [`MAX_PENDING`] bytes (stdout blocked, say a full pipe)
//! loggers wait for the writer instead of lines being dropped. Dropping the [`FlushGuard`]
//! writes what is pending and stops the thread, so lines logged before exit are not lost.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::access::AccessRecord;
use super::frames;
use super::json_text::{SecondCache, since_epoch};

/// Pending bytes at which the writer thread is woken: about 1,500 access records. Larger batches
/// mean fewer wake-ups and `write` calls (at 32 KiB the writer thread cost about twice the
/// CPU per request, `bench/README.md`); the lines still wait at most [`FLUSH_EVERY`].
pub const WAKE_WRITER_AT: usize = 128 * 1024;
/// Pending bytes beyond which loggers wait for the writer.
pub const MAX_PENDING: usize = 1024 * 1024;
/// Longest a line waits before it is written when logging is quiet.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// A handle to append lines; cheap to clone. Also a [`MakeWriter`] for tracing layers.
#[derive(Clone)]
pub struct LineBuffer {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lines not yet taken by the writer, and whether the writer is stopping.
    state: Mutex<Pending>,
    /// Signalled when the writer should take the buffer (full, or closing).
    writer_wanted: Condvar,
    /// Signalled when the writer has taken the buffer (room for waiting loggers).
    drained: Condvar,
}

struct Pending {
    /// Frames of complete lines and access records, in order.
    bytes: Vec<u8>,
    /// An urgent line is waiting: the writer must not sleep (a notify sent while it was
    /// busy writing would otherwise be lost).
    urgent: bool,
    /// Set by the guard: write what is left, then stop.
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A logger that panicked mid-append left whole lines behind (appends are one
        // `extend_from_slice`); keep logging rather than propagate the poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the writer thread when dropped, after it has written every pending line.
pub struct FlushGuard {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl LineBuffer {
    /// Starts the writer thread writing to `out`.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(Pending {
                bytes: Vec::with_capacity(WAKE_WRITER_AT * 2),
                urgent: false,
                closing: false,
            }),
            writer_wanted: Condvar::new(),
            drained: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || write_batches(&shared, out))?
        };
        Ok((
            Self {
                shared: shared.clone(),
            },
            FlushGuard {
                shared,
                writer: Some(writer),
            },
        ))
    }

    /// Appends one complete line (the caller includes the newline). An `urgent` line is
    /// written as soon as the writer thread runs, not with the next batch.
    pub fn append(&self, line: &[u8], urgent: bool) {
        self.push(urgent, |frames| frames::push_text(frames, line));
    }

    /// Appends an access record, to be encoded as a JSON line by the writer thread. The
    /// timestamp is taken now.
    pub fn append_access(&self, record: &AccessRecord<'_>) {
        let at = since_epoch();
        self.push(false, |frames| frames::push_access(frames, record, at));
    }

    /// Appends a frame written by `push` to the pending bytes, waiting for room if need be.
    fn push(&self, urgent: bool, push: impl FnOnce(&mut Vec<u8>)) {
        let mut pending = self.shared.lock();
        while pending.bytes.len() >= MAX_PENDING && !pending.closing {
            pending = self
                .shared
                .drained
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = pending.bytes.len();
        push(&mut pending.bytes);
        pending.urgent |= urgent;
        // Wake the writer once, when the threshold is crossed: a notify is a system call.
        if urgent || (before < WAKE_WRITER_AT && pending.bytes.len() >= WAKE_WRITER_AT) {
            self.shared.writer_wanted.notify_one();
        }
    }
}

/// The writer thread: takes the whole pending buffer at a time, renders it and writes it.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::with_capacity(WAKE_WRITER_AT * 2);
    // Access frames are about a third of their lines' length: a full batch renders to about
    // three times its size.
    let mut rendered = Vec::with_capacity(WAKE_WRITER_AT * 4);
    let mut second = SecondCache::default();
    loop {
        let closing = {
            let mut pending = shared.lock();
            if pending.bytes.len() < WAKE_WRITER_AT && !pending.urgent && !pending.closing {
                pending = shared
                    .writer_wanted
                    .wait_timeout(pending, FLUSH_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            // Swap buffers: loggers go on appending into the (empty) one just written.
            std::mem::swap(&mut pending.bytes, &mut batch);
            pending.urgent = false;
            shared.drained.notify_all();
            pending.closing
        };
        if !batch.is_empty() {
            frames::render(&batch, &mut rendered, &mut second);
            // Nowhere to report a broken stdout; the lines are lost, the service goes on.
            let _ = out.write_all(&rendered).and_then(|()| out.flush());
            batch.clear();
            rendered.clear();
            // Do not keep buffers a burst grew to megabytes.
            batch.shrink_to(WAKE_WRITER_AT * 2);
            rendered.shrink_to(WAKE_WRITER_AT * 4);
        }
        if closing && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.writer_wanted.notify_one();
        self.shared.drained.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// What a tracing layer writes one event through.
pub struct LineWriter<'a> {
    buffer: &'a LineBuffer,
    /// A warning or an error: written without waiting for the batch.
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.append(bytes, self.urgent);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineBuffer {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            buffer: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            buffer: self,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Collects what the writer thread writes, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut sink = self.0.lock().unwrap();
            sink.0.extend_from_slice(bytes);
            sink.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_once_in_batches_by_the_time_the_guard_drops() {
        let sink = Sink::default();
        let (lines, guard) = LineBuffer::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        lines.append(format!("thread {t} line {i}\n").as_bytes(), false);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut seen: Vec<&str> = text.lines().collect();
        assert_eq!(seen.len(), 80_000);
        // Lines stay whole and each thread's lines stay in order.
        for t in 0..4 {
            let prefix = format!("thread {t} line ");
            let own: Vec<usize> = seen
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(own, (0..20_000).collect::<Vec<_>>());
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 80_000, "a line was written twice");
        assert!(
            writes < 80_000 / 10,
            "{writes} writes for 80000 lines: not batched"
        );
    }

    #[test]
    fn a_quiet_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (lines, _guard) = LineBuffer::start(sink.clone()).unwrap();
        lines.append(b"alone\n", false);
        // Written by the periodic flush; poll for it (bounded), the guard is still alive.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }

    #[test]
    fn loggers_wait_rather_than_drop_lines_when_the_output_is_slow() {
        /// An output that takes its time, so the buffer fills past its bound.
        #[derive(Clone, Default)]
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let slow = Slow::default();
        let (lines, guard) = LineBuffer::start(slow.clone()).unwrap();
        let line = [b'x'; 1023];
        let mut total = 0;
        for _ in 0..4 * MAX_PENDING / 1024 {
            lines.append(&line, false);
            lines.append(b"\n", false);
            total += 1024;
            // Bounded: past the limit, at most the frame of the line that crossed it.
            assert!(lines.shared.lock().bytes.len() <= MAX_PENDING + 1024 + 5);
        }
        drop(guard);
        assert_eq!(slow.0.0.lock().unwrap().0.len(), total);
    }
}
