//! Process statistics, done right: one background task samples `/proc/self` on an interval
//! into a fixed set of atomics, and `/metrics` only reads them.
//!
//! The original service did its "collection" on the request path, in new processes, with a
//! list that grew forever. Here a request never waits for sampling, never starts a process or
//! thread for it, and the state is a handful of numbers however long the service runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The latest sample. Each field is written only by the sampler task and read by scrapes.
#[derive(Debug, Default)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    resident_bytes: AtomicU64,
    /// Virtual memory size in bytes.
    virtual_bytes: AtomicU64,
    /// User plus system CPU time, in microseconds (integer so it fits an atomic).
    cpu_micros: AtomicU64,
    /// Open file descriptors.
    open_fds: AtomicU64,
    /// Soft limit on file descriptors (0 when unlimited or unknown).
    max_fds: AtomicU64,
    /// OS threads of the process.
    threads: AtomicU64,
    /// Process start time, Unix seconds.
    start_time_secs: AtomicU64,
    /// Number of completed samples; 0 means nothing has been read yet.
    samples: AtomicU64,
}

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// Soft fd limit (0 when unlimited).
    pub max_fds: u64,
    /// OS threads.
    pub threads: u64,
    /// Start time, Unix seconds.
    pub start_time_secs: u64,
}

impl ProcessStats {
    /// Stores a sample.
    pub fn store(&self, s: &Sample) {
        self.resident_bytes
            .store(s.resident_bytes, Ordering::Relaxed);
        self.virtual_bytes.store(s.virtual_bytes, Ordering::Relaxed);
        self.cpu_micros
            .store((s.cpu_seconds * 1e6) as u64, Ordering::Relaxed);
        self.open_fds.store(s.open_fds, Ordering::Relaxed);
        self.max_fds.store(s.max_fds, Ordering::Relaxed);
        self.threads.store(s.threads, Ordering::Relaxed);
        self.start_time_secs
            .store(s.start_time_secs, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Release);
    }

    /// The latest sample, or `None` before the first one.
    pub fn latest(&self) -> Option<Sample> {
        if self.samples.load(Ordering::Acquire) == 0 {
            return None;
        }
        Some(Sample {
            resident_bytes: self.resident_bytes.load(Ordering::Relaxed),
            virtual_bytes: self.virtual_bytes.load(Ordering::Relaxed),
            cpu_seconds: self.cpu_micros.load(Ordering::Relaxed) as f64 / 1e6,
            open_fds: self.open_fds.load(Ordering::Relaxed),
            max_fds: self.max_fds.load(Ordering::Relaxed),
            threads: self.threads.load(Ordering::Relaxed),
            start_time_secs: self.start_time_secs.load(Ordering::Relaxed),
        })
    }

    /// How many samples have been taken.
    pub fn sample_count(&self) -> u64 {
        self.samples.load(Ordering::Acquire)
    }
}

/// Reads `/proc/self` once.
#[cfg(target_os = "linux")]
pub fn read_sample() -> Result<Sample, String> {
    use procfs::process::{LimitValue, Process};
    let me = Process::myself().map_err(|e| e.to_string())?;
    let stat = me.stat().map_err(|e| e.to_string())?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().map_err(|e| e.to_string())?;
    let max_fds = match me.limits().map(|l| l.max_open_files.soft_limit) {
        Ok(LimitValue::Value(v)) => v,
        _ => 0,
    };
    Ok(Sample {
        resident_bytes: stat.rss.saturating_mul(procfs::page_size()),
        virtual_bytes: stat.vsize,
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        open_fds: me.fd_count().map_err(|e| e.to_string())? as u64,
        max_fds,
        threads: u64::try_from(stat.num_threads).unwrap_or(0),
        start_time_secs: boot + (stat.starttime as f64 / ticks) as u64,
    })
}

/// Outside Linux there is no `/proc`; the metrics then stay absent.
#[cfg(not(target_os = "linux"))]
pub fn read_sample() -> Result<Sample, String> {
    Err("process statistics are only collected on Linux".into())
}

/// Samples every `interval` until `shutdown` resolves. The first sample is taken at once, so
/// `/metrics` has process figures from the start.
pub async fn run_sampler(
    stats: std::sync::Arc<ProcessStats>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    // After a stall, sample once rather than in a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match read_sample() {
            Ok(sample) => stats.store(&sample),
            Err(error) if !warned => {
                warned = true;
                tracing::warn!(%error, "cannot sample process statistics");
            }
            Err(_) => {}
        }
    }
}

impl Collector for ProcessStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.latest() else {
            return Ok(());
        };
        let gauges: [(&str, &str, u64); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                s.threads,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_secs,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value as i64);
            let metric_encoder =
                encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric_encoder)?;
        }
        let cpu = ConstCounter::new(s.cpu_seconds);
        let metric_encoder = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(metric_encoder)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_sample_has_plausible_figures() {
        let s = read_sample().unwrap();
        assert!(s.resident_bytes > 100 * 1024, "{s:?}");
        assert!(s.threads >= 1 && s.open_fds >= 1, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            s.start_time_secs <= now && now - s.start_time_secs < 3600,
            "{s:?}"
        );
    }

    #[test]
    fn stored_samples_read_back_and_nothing_is_reported_before_the_first() {
        let stats = ProcessStats::default();
        assert_eq!(stats.latest(), None);
        let s = Sample {
            resident_bytes: 1,
            virtual_bytes: 2,
            cpu_seconds: 1.5,
            open_fds: 3,
            max_fds: 4,
            threads: 5,
            start_time_secs: 6,
        };
        stats.store(&s);
        assert_eq!(stats.latest(), Some(s));
    }
}
