//! Command-line and environment configuration.
//!
//! Raw flags are parsed by clap into [`Cli`], then [`Cli::validate`] turns them into a checked
//! [`Config`]; the rest of the service only ever sees the checked form. Every rejection names
//! the flag, the bad value and what is accepted, and maps to exit code 2.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::faults::{FaultSpec, Faults};
use crate::secret::Secret;

/// Version string shown by `--version`: the crate version and the git commit it was built from.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("METRICS_APP_GIT_COMMIT"),
    ")"
);

/// The raw command line, before validation.
#[derive(Debug, Parser)]
#[command(
    name = "metrics-app",
    version = LONG_VERSION,
    about = "The /counter service: a shared counter over HTTP with health probes and Prometheus metrics.",
    long_about = "The /counter service: a shared counter over HTTP with health probes and Prometheus metrics.\n\n\
        The admin password is read from the PASSWORD environment variable or from the file named by \
        --password-file / PASSWORD_FILE. Every flag has an environment variable fallback; flags win."
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8080")]
    pub bind: String,

    /// Where the counter lives: `memory` (this process only) or `redis` (shared by all replicas).
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,

    /// Redis URL, required with `--store redis` (e.g. redis://127.0.0.1:6379/0).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Redis key holding the counter.
    #[arg(long, env = "REDIS_KEY", default_value = "metrics-app:counter")]
    pub redis_key: String,

    /// Instance name for the X-Instance header and logs [default: $POD_NAME, else the host name].
    #[arg(long, env = "INSTANCE")]
    pub instance: Option<String>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// After SIGTERM/SIGINT, keep serving this long while /readyz answers 503 (e.g. 5s, 500ms).
    #[arg(long, env = "DRAIN_DELAY", default_value = "5s")]
    pub drain_delay: String,

    /// Then stop accepting and give in-flight requests this long to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: String,

    /// How often the background task samples process statistics.
    #[arg(long, env = "COLLECT_INTERVAL", default_value = "5s")]
    pub collect_interval: String,

    /// Time a client has to send a complete request head; slower (or idle) connections are closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,

    /// Connections served at once; further connections wait to be accepted (backpressure).
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "1024")]
    pub max_connections: String,

    /// Fault mode reproducing a historical bug (repeatable): `slow-even[=DURATION]`, `leak[=MB]`.
    /// Off by default; never switchable at run time.
    #[arg(long = "fault", env = "FAULTS", value_delimiter = ',')]
    pub faults: Vec<String>,

    /// File holding the admin password (a mounted Secret); a trailing newline is trimmed.
    #[arg(long, env = "PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Internal helper processes; not part of the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Helper subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Burn one CPU for a bounded time. Started only by the `slow-even` fault mode, which
    /// reproduces the original collector processes.
    #[command(hide = true)]
    BurnCpu {
        /// How long to burn, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// Counter store selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// An in-process atomic: zero setup, one sequence per process.
    Memory,
    /// Atomic INCR on a Redis key: one sequence shared by every replica.
    Redis,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    Text,
}

/// Checked store configuration.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In-process counter.
    Memory,
    /// Shared Redis counter.
    Redis {
        /// Connection URL (may contain a password, so it is never logged).
        url: Secret,
        /// Key holding the counter.
        key: String,
    },
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub bind: SocketAddr,
    /// Counter store.
    pub store: StoreConfig,
    /// Name of this instance, sent in `X-Instance`.
    pub instance: String,
    /// Log output format.
    pub log_format: LogFormat,
    /// Time spent answering 503 on /readyz before the listener closes.
    pub drain_delay: Duration,
    /// Time in-flight requests get after the listener closes.
    pub shutdown_timeout: Duration,
    /// Process statistics sampling period.
    pub collect_interval: Duration,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// Connections served concurrently.
    pub max_connections: usize,
    /// Active fault modes.
    pub faults: Faults,
    /// Admin password.
    pub password: Secret,
}

/// A configuration value that was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A flag (or its environment variable) has a value that cannot be used.
    #[error("invalid value {value:?} for {flag}: {expected}")]
    Invalid {
        /// The flag and its environment variable, e.g. `--drain-delay/DRAIN_DELAY`.
        flag: &'static str,
        /// The rejected value.
        value: String,
        /// What is accepted instead.
        expected: String,
    },
    /// A flag required by another one is missing.
    #[error("{0}")]
    Missing(String),
}

impl Cli {
    /// Validates the raw flags into a [`Config`]. `password` comes from [`crate::secret::load_password`].
    pub fn validate(self, password: Secret) -> Result<Config, ConfigError> {
        let bind = self
            .bind
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Invalid {
                flag: "--bind/BIND",
                value: self.bind.clone(),
                expected: "an IP address and port such as 0.0.0.0:8080 or 127.0.0.1:9000".into(),
            })?;
        let store = match self.store {
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::Redis => {
                let url = self
                    .redis_url
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError::Missing(
                        "--store redis needs --redis-url/REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
                            .into(),
                    )
                    })?;
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("unix://"))
                {
                    return Err(ConfigError::Invalid {
                        flag: "--redis-url/REDIS_URL",
                        // The URL may embed a password: show only its scheme part.
                        value: url.split("://").next().unwrap_or_default().to_string(),
                        expected: "a URL starting with redis://, rediss:// or unix://".into(),
                    });
                }
                if self.redis_key.is_empty() {
                    return Err(ConfigError::Invalid {
                        flag: "--redis-key/REDIS_KEY",
                        value: String::new(),
                        expected: "a non-empty key".into(),
                    });
                }
                StoreConfig::Redis {
                    url: Secret::new(url),
                    key: self.redis_key,
                }
            }
        };
        let instance = match self.instance.filter(|s| !s.is_empty()) {
            Some(name) => validate_instance(name)?,
            None => default_instance(),
        };
        let drain_delay = parse_duration("--drain-delay/DRAIN_DELAY", &self.drain_delay)?;
        let shutdown_timeout = parse_duration(
            "--shutdown-timeout/SHUTDOWN_TIMEOUT",
            &self.shutdown_timeout,
        )?;
        let collect_interval = parse_duration(
            "--collect-interval/COLLECT_INTERVAL",
            &self.collect_interval,
        )?;
        if collect_interval < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                flag: "--collect-interval/COLLECT_INTERVAL",
                value: self.collect_interval,
                expected: "a duration of at least 10ms".into(),
            });
        }
        let header_read_timeout = parse_duration(
            "--header-read-timeout/HEADER_READ_TIMEOUT",
            &self.header_read_timeout,
        )?;
        if header_read_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                flag: "--header-read-timeout/HEADER_READ_TIMEOUT",
                value: self.header_read_timeout,
                expected: "a duration of at least 100ms".into(),
            });
        }
        let max_connections = self
            .max_connections
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                flag: "--max-connections/MAX_CONNECTIONS",
                value: self.max_connections.clone(),
                expected: "a whole number from 1 to 1000000".into(),
            })?;
        let mut specs = Vec::new();
        for raw in self
            .faults
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            specs.push(
                raw.parse::<FaultSpec>()
                    .map_err(|expected| ConfigError::Invalid {
                        flag: "--fault/FAULTS",
                        value: raw.to_string(),
                        expected,
                    })?,
            );
        }
        Ok(Config {
            bind,
            store,
            instance,
            log_format: self.log_format,
            drain_delay,
            shutdown_timeout,
            collect_interval,
            header_read_timeout,
            max_connections,
            faults: Faults::from_specs(specs),
            password,
        })
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        })
    }
}

/// Parses a human duration such as `5s`, `250ms` or `1m`; a bare number means seconds.
pub fn parse_duration(flag: &'static str, raw: &str) -> Result<Duration, ConfigError> {
    let trimmed = raw.trim();
    let parsed = match trimmed.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(trimmed),
    };
    match parsed {
        Ok(d) if d <= Duration::from_secs(24 * 3600) => Ok(d),
        _ => Err(ConfigError::Invalid {
            flag,
            value: raw.to_string(),
            expected: "a duration up to 24h such as 500ms, 5s or 1m".into(),
        }),
    }
}

/// Instance names go into a response header, so they must be visible ASCII.
fn validate_instance(name: String) -> Result<String, ConfigError> {
    if name.len() <= 253 && name.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(name)
    } else {
        Err(ConfigError::Invalid {
            flag: "--instance/INSTANCE",
            value: name,
            expected: "up to 253 visible ASCII characters (no spaces)".into(),
        })
    }
}

/// `POD_NAME` (set by the chart through the downward API), else the host name.
fn default_instance() -> String {
    let candidates = [
        std::env::var("POD_NAME").ok(),
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "metrics-app".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut full = vec!["metrics-app"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full).unwrap()
    }

    fn validate(args: &[&str]) -> Result<Config, ConfigError> {
        cli(args).validate(Secret::new("pw".into()))
    }

    #[test]
    fn defaults_are_a_memory_store_on_port_8080() {
        let config = validate(&["--instance", "a"]).unwrap();
        assert_eq!(config.bind.port(), 8080);
        assert!(matches!(config.store, StoreConfig::Memory));
        assert_eq!(config.drain_delay, Duration::from_secs(5));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
        assert!(config.faults.is_empty());
    }

    #[test]
    fn a_bad_duration_names_the_flag_value_and_accepted_form() {
        let err = validate(&["--drain-delay", "soon"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("--drain-delay/DRAIN_DELAY"), "{msg}");
        assert!(msg.contains("\"soon\""), "{msg}");
        assert!(msg.contains("500ms"), "{msg}");
    }

    #[test]
    fn a_bare_number_is_seconds_and_units_are_accepted() {
        assert_eq!(parse_duration("x", "3").unwrap(), Duration::from_secs(3));
        assert_eq!(
            parse_duration("x", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_duration("x", "-1s").is_err());
        assert!(parse_duration("x", "1000h").is_err());
    }

    #[test]
    fn redis_store_requires_a_url_and_hides_its_credentials() {
        let err = validate(&["--store", "redis"]).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"));
        let err =
            validate(&["--store", "redis", "--redis-url", "http://user:hunter2@x"]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let ok = validate(&["--store", "redis", "--redis-url", "redis://127.0.0.1:1/0"]).unwrap();
        assert!(
            matches!(ok.store, StoreConfig::Redis { ref key, .. } if key == "metrics-app:counter")
        );
    }

    #[test]
    fn bad_bind_and_connection_limits_are_rejected() {
        assert!(
            validate(&["--bind", "localhost"])
                .unwrap_err()
                .to_string()
                .contains("--bind/BIND")
        );
        assert!(validate(&["--max-connections", "0"]).is_err());
        assert!(validate(&["--max-connections", "many"]).is_err());
    }

    #[test]
    fn unknown_fault_modes_list_the_known_ones() {
        let msg = validate(&["--fault", "explode"]).unwrap_err().to_string();
        assert!(msg.contains("slow-even") && msg.contains("leak"), "{msg}");
        let config = validate(&["--fault", "slow-even=2s,leak=3"]).unwrap();
        assert_eq!(config.faults.slow_even, Some(Duration::from_secs(2)));
        assert_eq!(config.faults.leak_mb, Some(3));
    }

    #[test]
    fn instance_names_must_fit_in_a_header() {
        assert!(validate(&["--instance", "bad name"]).is_err());
        assert_eq!(
            validate(&["--instance", "pod-1"]).unwrap().instance,
            "pod-1"
        );
    }
}
