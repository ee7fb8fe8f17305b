//! Fault modes: deliberate, opt-in reproductions of the original service's two bugs.
//!
//! The Python original (1) made every even `/counter` request wait ~21 s while it spawned
//! CPU-burning collector processes that kept running, and (2) appended ~500 MB per collection
//! to a global list until the pod was OOMKilled. Dashboards, alerts and `appctl diagnose` are
//! demonstrated and tested against these behaviours. They are switched on only by start-up
//! configuration — no request can turn them on — and each is announced in the log and in
//! `metrics_app_fault_active`.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// Default wait of `slow-even`, as measured by the users on the original.
pub const DEFAULT_SLOW_EVEN: Duration = Duration::from_secs(21);
/// Default megabytes retained per request by `leak`.
pub const DEFAULT_LEAK_MB: u64 = 100;
/// Burner processes started per slow request (the original showed several at ~80% CPU each).
pub const BURNERS_PER_SLOW_REQUEST: usize = 2;
/// Burners live three times the request's wait, capped so a demo never runs away for good.
const MAX_BURN: Duration = Duration::from_secs(600);

/// One `--fault` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSpec {
    /// `slow-even[=DURATION]`.
    SlowEven(Duration),
    /// `leak[=MB]`.
    Leak(u64),
}

impl FromStr for FaultSpec {
    /// What is accepted, for the configuration error message.
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let accepted = "slow-even[=DURATION] (e.g. slow-even=21s) or leak[=MB] (e.g. leak=100)";
        let (name, arg) = match raw.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (raw, None),
        };
        match (name, arg) {
            ("slow-even", None) => Ok(Self::SlowEven(DEFAULT_SLOW_EVEN)),
            ("slow-even", Some(d)) => crate::duration::parse(d)
                .filter(|d| !d.is_zero())
                .map(Self::SlowEven)
                .ok_or_else(|| format!("{accepted}; the duration must be positive, up to 24h")),
            ("leak", None) => Ok(Self::Leak(DEFAULT_LEAK_MB)),
            ("leak", Some(mb)) => mb
                .parse::<u64>()
                .ok()
                .filter(|mb| (1..=65_536).contains(mb))
                .map(Self::Leak)
                .ok_or_else(|| format!("{accepted}; MB must be a whole number from 1 to 65536")),
            _ => Err(accepted.to_string()),
        }
    }
}

/// The active fault modes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Wait imposed on even counter values, when `slow-even` is on.
    pub slow_even: Option<Duration>,
    /// Megabytes retained per `/counter` request, when `leak` is on.
    pub leak_mb: Option<u64>,
}

impl Faults {
    /// Combines parsed specs; a later spec of the same mode wins.
    pub fn from_specs(specs: impl IntoIterator<Item = FaultSpec>) -> Self {
        let mut faults = Self::default();
        for spec in specs {
            match spec {
                FaultSpec::SlowEven(d) => faults.slow_even = Some(d),
                FaultSpec::Leak(mb) => faults.leak_mb = Some(mb),
            }
        }
        faults
    }

    /// True when no fault mode is on (the normal, correct service).
    pub fn is_empty(&self) -> bool {
        self.slow_even.is_none() && self.leak_mb.is_none()
    }

    /// Every known mode with whether it is on, for `metrics_app_fault_active`.
    pub fn modes(&self) -> [(&'static str, bool); 2] {
        [
            ("slow-even", self.slow_even.is_some()),
            ("leak", self.leak_mb.is_some()),
        ]
    }
}

/// Memory retained by the `leak` fault: it only grows, until the process is killed.
#[derive(Debug, Default)]
pub struct Leak {
    chunks: Mutex<Vec<Vec<u8>>>,
}

impl Leak {
    /// Allocates `mb` megabytes, writes every page so it is resident (not just reserved), keeps
    /// it forever, and returns the total retained bytes.
    pub fn retain(&self, mb: u64) -> u64 {
        let bytes = usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        // Non-zero filling defeats the zero-page optimisation, so RSS really grows.
        let chunk = vec![0xA5u8; bytes];
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        chunks.push(chunk);
        chunks.iter().map(|c| c.len() as u64).sum()
    }
}

/// How long the burners of one slow request run.
pub fn burn_duration(wait: Duration) -> Duration {
    (wait * 3).min(MAX_BURN)
}

/// The CPU-burning child processes of the `slow-even` fault. They outlive the request that
/// started them, as the original's collectors did, but not the service: [`Burners::stop_all`]
/// ends them at shutdown, and each burner also exits by itself when its parent is gone (a
/// crash or SIGKILL of the service) or after [`burn_duration`].
#[derive(Debug, Default)]
pub struct Burners {
    children: Mutex<Vec<tokio::process::Child>>,
}

impl Burners {
    /// Starts the burners of one slow request: copies of this binary running the hidden
    /// `burn-cpu` subcommand. Returns how many started. Must run inside the tokio runtime.
    pub fn spawn(&self, wait: Duration) -> usize {
        let Ok(exe) = std::env::current_exe() else {
            tracing::warn!("slow-even: cannot find the own executable; no burner started");
            return 0;
        };
        let seconds = burn_duration(wait).as_secs().max(1).to_string();
        let parent = std::process::id().to_string();
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        // Finished burners are forgotten here; tokio reaps them, so no zombie is left.
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        let mut started = 0;
        for _ in 0..BURNERS_PER_SLOW_REQUEST {
            let spawned = tokio::process::Command::new(&exe)
                .args(["burn-cpu", "--seconds", &seconds, "--parent", &parent])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Ok(child) => {
                    children.push(child);
                    started += 1;
                }
                Err(error) => tracing::warn!(%error, "slow-even: cannot start a burner process"),
            }
        }
        started
    }

    /// Kills every burner still running; returns how many were.
    pub fn stop_all(&self) -> usize {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let mut stopped = 0;
        for mut child in children.drain(..) {
            if matches!(child.try_wait(), Ok(None)) && child.start_kill().is_ok() {
                stopped += 1;
            }
        }
        stopped
    }
}

/// The body of `metrics-app burn-cpu`: spin on one core for `seconds`, then exit; exit early
/// once the process `parent` is no longer this process's parent (it died: the burner was
/// re-parented).
pub fn burn_cpu(seconds: u64, parent: Option<u32>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while std::time::Instant::now() < deadline {
        #[cfg(unix)]
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
        assert_eq!(
            "slow-even".parse(),
            Ok(FaultSpec::SlowEven(DEFAULT_SLOW_EVEN))
        );
        assert_eq!(
            "slow-even=1500ms".parse(),
            Ok(FaultSpec::SlowEven(Duration::from_millis(1500)))
        );
        assert_eq!("leak".parse(), Ok(FaultSpec::Leak(DEFAULT_LEAK_MB)));
        assert_eq!("leak=5".parse(), Ok(FaultSpec::Leak(5)));
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
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad} was accepted");
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
