//! Fault modes: deliberate, opt-in reproductions of the original service's two bugs.
//!
//! The Python original (1) made every even `/counter` request wait ~21 s while it spawned
//! CPU-burning collector processes that kept running, and (2) appended ~500 MB per collection
//! to a global list until the pod was OOMKilled. Dashboards, alerts and `appctl diagnose` are
//! demonstrated and tested against these behaviours. They are switched on only by start-up
//! configuration — no request can turn them on — and each is announced in the log and in
//! `metrics_app_fault_active`.

use std::process::Stdio;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Default wait of `slow-even`, as measured by the users on the original.
pub(crate) const DEFAULT_SLOW_EVEN: Duration = Duration::from_secs(21);
/// Default megabytes retained per request by `leak`.
pub(crate) const DEFAULT_LEAK_MB: u64 = 100;
/// Burner processes started per slow request (the original showed several at ~80% CPU each).
const BURNERS_PER_SLOW_REQUEST: usize = 2;
/// Burners live three times the request's wait, capped so a demo never runs away for good.
const MAX_BURN: Duration = Duration::from_secs(600);

/// The active fault modes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Faults {
    /// Wait imposed on even counter values, when `slow-even` is on.
    pub(crate) slow_even: Option<Duration>,
    /// Megabytes retained per `/counter` request, when `leak` is on.
    pub(crate) leak_mb: Option<u64>,
}

/// One `--fault` value, `slow-even[=DURATION]` or `leak[=MB]`: the one mode it switches on.
impl FromStr for Faults {
    /// What is accepted, for the configuration error message.
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let accepted = "slow-even[=DURATION] (e.g. slow-even=21s) or leak[=MB] (e.g. leak=100)";
        let slow_even = |d| Self {
            slow_even: Some(d),
            ..Self::default()
        };
        let leak = |mb| Self {
            leak_mb: Some(mb),
            ..Self::default()
        };
        match raw
            .split_once('=')
            .map_or((raw, None), |(name, arg)| (name, Some(arg)))
        {
            ("slow-even", None) => Ok(slow_even(DEFAULT_SLOW_EVEN)),
            ("slow-even", Some(d)) => crate::duration::parse(d)
                .filter(|d| !d.is_zero())
                .map(slow_even)
                .ok_or_else(|| format!("{accepted}; the duration must be positive, up to 24h")),
            ("leak", None) => Ok(leak(DEFAULT_LEAK_MB)),
            ("leak", Some(mb)) => mb
                .parse::<u64>()
                .ok()
                .filter(|mb| (1..=65_536).contains(mb))
                .map(leak)
                .ok_or_else(|| format!("{accepted}; MB must be a whole number from 1 to 65536")),
            _ => Err(accepted.to_string()),
        }
    }
}

impl Faults {
    /// Combines `--fault` values; for a mode given more than once, the last value wins.
    pub(crate) fn combine(values: Vec<Self>) -> Self {
        values
            .into_iter()
            .fold(Self::default(), |earlier, later| Self {
                slow_even: later.slow_even.or(earlier.slow_even),
                leak_mb: later.leak_mb.or(earlier.leak_mb),
            })
    }

    /// Every known mode with whether it is on, for `metrics_app_fault_active`: the names live
    /// here, beside the parser that accepts them.
    pub(crate) fn modes(&self) -> [(&'static str, bool); 2] {
        [
            ("slow-even", self.slow_even.is_some()),
            ("leak", self.leak_mb.is_some()),
        ]
    }

    /// True when no fault mode is on (the normal, correct service).
    pub(crate) fn is_empty(&self) -> bool {
        self.slow_even.is_none() && self.leak_mb.is_none()
    }
}

/// Memory retained by the `leak` fault: it only grows, until the process is killed.
#[derive(Debug, Default)]
pub(crate) struct Leak {
    chunks: Mutex<Vec<Vec<u8>>>,
}

impl Leak {
    /// Allocates `mb` megabytes, writes every page so it is resident (not just reserved), keeps
    /// it forever, and returns the total retained bytes.
    pub(crate) fn retain(&self, mb: u64) -> u64 {
        let bytes = usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        // Non-zero filling defeats the zero-page optimisation, so RSS really grows.
        let chunk = vec![0xA5u8; bytes];
        let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        chunks.push(chunk);
        chunks.iter().map(|c| c.len() as u64).sum()
    }
}

/// How long the burners of one slow request run.
pub(crate) fn burn_duration(wait: Duration) -> Duration {
    (wait * 3).min(MAX_BURN)
}

/// The CPU-burning child processes of the `slow-even` fault. They outlive the request that
/// started them, as the original's collectors did, but not the service: [`Burners::stop_all`]
/// ends them at shutdown, and each burner also exits by itself when its parent is gone (a
/// crash or SIGKILL of the service) or after [`burn_duration`].
#[derive(Debug, Default)]
pub(crate) struct Burners {
    /// Started with `kill_on_drop`: dropping one kills it.
    children: Mutex<Vec<tokio::process::Child>>,
}

impl Burners {
    /// Starts the burners of one slow request: copies of this binary running the hidden
    /// `burn-cpu` subcommand. Returns how many started. Must run inside the tokio runtime.
    pub(crate) fn spawn(&self, wait: Duration) -> usize {
        let Ok(exe) = std::env::current_exe() else {
            tracing::warn!("slow-even: cannot find the own executable; no burner started");
            return 0;
        };
        let seconds = burn_duration(wait).as_secs().max(1).to_string();
        let parent = std::process::id().to_string();
        let mut children = self.running();
        let before = children.len();
        for _ in 0..BURNERS_PER_SLOW_REQUEST {
            // No inherited stdio: a burner must not hold the service's output pipes open.
            let spawned = tokio::process::Command::new(&exe)
                .args(["burn-cpu", "--seconds", &seconds, "--parent", &parent])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(child) => children.push(child),
                Err(error) => tracing::warn!(%error, "slow-even: cannot start a burner process"),
            }
        }
        children.len() - before
    }

    /// Kills every burner still running; returns how many were.
    pub(crate) fn stop_all(&self) -> usize {
        self.running().drain(..).count()
    }

    /// The burners still running; finished ones are forgotten (tokio reaps them: no zombie).
    fn running(&self) -> std::sync::MutexGuard<'_, Vec<tokio::process::Child>> {
        let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        children
    }
}

/// The body of `metrics-app burn-cpu`: spin on one core for `seconds`, then exit; exit early
/// once the process `parent` is no longer this process's parent (it died: the burner was
/// re-parented).
pub fn burn_cpu(seconds: u64, parent: Option<u32>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while std::time::Instant::now() < deadline {
        if parent.is_some_and(|p| p != std::os::unix::process::parent_id()) {
            return;
        }
        for _ in 0..100_000 {
            // xorshift: cheap work the optimiser cannot remove.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn specs_parse_with_and_without_arguments() {
        let slow_even = |d| Faults {
            slow_even: Some(d),
            leak_mb: None,
        };
        assert_eq!("slow-even".parse(), Ok(slow_even(DEFAULT_SLOW_EVEN)));
        assert_eq!(
            "slow-even=1500ms".parse(),
            Ok(slow_even(Duration::from_millis(1500)))
        );
        let leak = |mb| Faults {
            slow_even: None,
            leak_mb: Some(mb),
        };
        assert_eq!("leak".parse(), Ok(leak(DEFAULT_LEAK_MB)));
        assert_eq!("leak=5".parse(), Ok(leak(5)));
    }

    #[test]
    fn values_combine_and_the_last_of_a_mode_wins() {
        let values = ["leak=1", "slow-even", "leak=2"].map(|v| v.parse().unwrap());
        assert_eq!(
            Faults::combine(values.to_vec()),
            Faults {
                slow_even: Some(DEFAULT_SLOW_EVEN),
                leak_mb: Some(2),
            }
        );
    }

    #[test]
    fn bad_specs_are_rejected() {
        for bad in [
            "leak=0",
            "leak=-1",
            "leak=lots",
            "slow-even=0s",
            "slow-even=x",
            "slow",
            "",
        ] {
            assert!(bad.parse::<Faults>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn leak_only_grows() {
        let leak = Leak::default();
        assert_eq!(leak.retain(1), 1024 * 1024);
        assert_eq!(leak.retain(2), 3 * 1024 * 1024);
    }

    #[test]
    fn burners_are_bounded() {
        assert_eq!(
            burn_duration(Duration::from_secs(2)),
            Duration::from_secs(6)
        );
        assert_eq!(burn_duration(Duration::from_secs(3600)), MAX_BURN);
    }
}
