//! Process statistics, done right: one background task samples `/proc/self` on an interval
//! and keeps the latest reading, and `/metrics` only reads it.
//!
//! The original service did its "collection" on the request path, in new processes, with a
//! list that grew forever. Here a request never waits for sampling, never starts a process or
//! thread for it, and the state is one reading however long the service runs.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The latest reading, written by [`run_sampler`] and read by scrapes, both every few seconds,
/// so the lock is all but never contended. `None` before the first sample: the metrics are
/// then absent rather than zero.
#[derive(Debug, Default)]
pub struct ProcessStats(Mutex<Option<Sample>>);

/// One reading of `/proc/self`: each gauge's name, help and value, and the CPU time counter.
#[derive(Debug, Clone, Copy)]
struct Sample {
    gauges: [(&'static str, &'static str, u64); 6],
    /// User plus system CPU time, in seconds.
    cpu_seconds: f64,
}

#[cfg(target_os = "linux")]
fn read_sample() -> Result<Sample, Box<dyn std::error::Error>> {
    use procfs::process::{LimitValue, Process};
    let me = Process::myself()?;
    let stat = me.stat()?;
    let ticks = procfs::ticks_per_second() as f64;
    // The soft limit; 0 when unlimited or unknown.
    let max_fds = match me.limits().map(|l| l.max_open_files.soft_limit) {
        Ok(LimitValue::Value(v)) => v,
        _ => 0,
    };
    Ok(Sample {
        gauges: [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.rss.saturating_mul(procfs::page_size()),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                me.fd_count()? as u64,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                u64::try_from(stat.num_threads).unwrap_or(0),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                procfs::boot_time_secs()? + (stat.starttime as f64 / ticks) as u64,
            ),
        ],
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
    })
}

/// Outside Linux there is no `/proc`; the metrics then stay absent.
#[cfg(not(target_os = "linux"))]
fn read_sample() -> Result<Sample, Box<dyn std::error::Error>> {
    Err("process statistics are only collected on Linux".into())
}

/// Samples every `interval` until `shutdown` resolves. The first sample is taken at once, so
/// `/metrics` has process figures from the start.
pub async fn run_sampler(
    stats: Arc<ProcessStats>,
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
            Ok(sample) => *stats.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(sample),
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
        let Some(s) = *self.0.lock().unwrap_or_else(PoisonError::into_inner) else {
            return Ok(());
        };
        for (name, help, value) in s.gauges {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let cpu = ConstCounter::new(s.cpu_seconds);
        let name = "process_cpu_seconds";
        let help = "Total user and system CPU time spent in seconds";
        cpu.encode(encoder.encode_descriptor(name, help, None, cpu.metric_type())?)
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
        let value = |name| s.gauges.iter().find(|g| g.0 == name).unwrap().2;
        assert!(value("process_resident_memory_bytes") > 100 * 1024, "{s:?}");
        assert!(value("process_threads") >= 1, "{s:?}");
        assert!(value("process_open_fds") >= 1, "{s:?}");
        let started = value("process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(started <= now && now - started < 3600, "{s:?}");
    }

    #[test]
    fn nothing_is_exported_before_the_first_sample_and_the_latest_after_it() {
        let stats = Arc::new(ProcessStats::default());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(stats.clone()));
        let exposition = || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        };
        assert_eq!(exposition(), "# EOF\n");
        let gauge = |name, value| (name, "help", value);
        *stats.0.lock().unwrap() = Some(Sample {
            gauges: [
                gauge("process_resident_memory_bytes", 1),
                gauge("process_virtual_memory_bytes", 2),
                gauge("process_open_fds", 3),
                gauge("process_max_fds", 4),
                gauge("process_threads", 5),
                gauge("process_start_time_seconds", 6),
            ],
            cpu_seconds: 1.5,
        });
        let out = exposition();
        for line in [
            "process_resident_memory_bytes 1\n",
            "process_virtual_memory_bytes 2\n",
            "process_open_fds 3\n",
            "process_max_fds 4\n",
            "process_threads 5\n",
            "process_start_time_seconds 6\n",
            "process_cpu_seconds_total 1.5\n",
        ] {
            assert!(out.contains(line), "{line:?} missing from {out}");
        }
    }
}
