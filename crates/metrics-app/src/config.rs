//! Command-line and environment configuration.
//!
//! clap parses and type-checks every flag (durations, addresses, numbers, fault modes) into
//! [`Cli`], naming the flag, the bad value and what is accepted, with exit code 2; then
//! [`Cli::validate`] checks what depends on several flags at once and returns the [`Config`]
//! the rest of the service sees.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration;
use crate::faults::{FaultSpec, Faults};
use crate::secret::{Password, Secret};

/// Version string shown by `--version`: the crate version and the git commit it was built from.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("METRICS_APP_GIT_COMMIT"),
    ")"
);

/// The command line, parsed and type-checked.
#[derive(Debug, Parser)]
#[command(
    name = "metrics-app",
    version = LONG_VERSION,
    about = "The /counter service: a shared counter over HTTP with health probes and Prometheus metrics.",
    long_about = "The /counter service: a shared counter over HTTP with health probes and Prometheus metrics.\n\n\
        The admin password is read from the PASSWORD environment variable or from the file named by \
        --password-file / PASSWORD_FILE (re-read when it changes, so a rotated Secret needs no restart); \
        setting both is an error. Every flag has an environment variable fallback; flags win."
)]
pub struct Cli {
    /// How the service listens, logs and stops.
    #[command(flatten)]
    pub options: Options,

    /// Where the counter lives: `memory` (this process only) or `redis` (shared by all replicas).
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub store: StoreKind,

    /// Redis URL, required with `--store redis` (e.g. redis://127.0.0.1:6379/0).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Redis Sentinels to ask for the current primary instead of a fixed `--redis-url`:
    /// comma-separated HOST:PORT (e.g. redis-ha:26379). After a failover the service asks them
    /// again and follows the new primary.
    #[arg(long, env = "REDIS_SENTINELS", value_delimiter = ',', value_parser = host_port)]
    pub redis_sentinels: Vec<String>,

    /// The primary's name as the Sentinels know it (`sentinel monitor NAME ...`).
    #[arg(long, env = "REDIS_SENTINEL_MASTER", default_value = "mymaster", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub redis_sentinel_master: String,

    /// Password of the Redis servers found through `--redis-sentinels` (with `--redis-url`, put
    /// it in the URL). The Sentinels themselves are asked without one.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Redis key holding the counter.
    #[arg(long, env = "REDIS_KEY", default_value = "metrics-app:counter", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub redis_key: String,

    /// After each batch of increments, wait until this many replicas have it before answering
    /// (Redis `WAIT`), so a replica promoted after a failover never hands out a value twice.
    /// 0 turns it off; it needs that many replicas attached, or `/counter` answers 503.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub redis_wait_replicas: u32,

    /// How long `--redis-wait-replicas` waits for the replicas before the batch fails with 503.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT", default_value = "100ms", value_parser = wait_timeout)]
    pub redis_wait_timeout: Duration,

    /// Instance name for the X-Instance header and logs [default: $POD_NAME, else the host name].
    #[arg(long, env = "INSTANCE", value_parser = instance_name)]
    pub instance: Option<String>,

    /// Fault mode reproducing a historical bug (repeatable): `slow-even[=DURATION]`, `leak[=MB]`.
    /// Off by default; never switchable at run time.
    #[arg(long = "fault", env = "FAULTS", value_delimiter = ',', value_parser = fault)]
    pub faults: Vec<FaultSpec>,

    /// File holding the admin password (a mounted Secret); a trailing newline is trimmed.
    #[arg(long, env = "PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Internal helper processes; not part of the service.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// How the service listens, logs and stops: used as parsed.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Address of the public listener: `/`, `/counter` and the admin API.
    #[arg(long, env = "BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Address of the management listener: `/healthz`, `/readyz` and `/metrics`, with a
    /// connection budget of its own so that load on the public port cannot starve probes.
    #[arg(long, env = "MANAGEMENT_BIND", default_value = "0.0.0.0:9090")]
    pub management_bind: SocketAddr,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log one `access` event per request (off by default; probes and scrapes log at debug).
    #[arg(long, env = "ACCESS_LOG")]
    pub access_log: bool,

    /// After SIGTERM/SIGINT, keep serving this long while /readyz answers 503 (e.g. 5s, 500ms).
    #[arg(long, env = "DRAIN_DELAY", default_value = "5s", value_parser = any_duration)]
    pub drain_delay: Duration,

    /// Then stop accepting and give requests in flight this long to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = any_duration)]
    pub shutdown_timeout: Duration,

    /// How often the background task samples process statistics (at least 10ms).
    #[arg(long, env = "COLLECT_INTERVAL", default_value = "5s", value_parser = interval)]
    pub collect_interval: Duration,

    /// Time a client has to send a complete request head; slower (or idle) connections are
    /// closed (at least 100ms).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = timeout)]
    pub header_read_timeout: Duration,

    /// Time a client has between two pieces of a request body; a stalled upload gets 408 (at
    /// least 100ms).
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = timeout)]
    pub body_read_timeout: Duration,

    /// Connections the public listener serves at once; beyond them a new connection gets a fast
    /// 503 and is closed, instead of waiting in a queue.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// A keep-alive connection is closed after its current response once it is this old, so
    /// clients reconnect and spread over replicas that were added since (at least 100ms).
    #[arg(long, env = "MAX_CONNECTION_AGE", default_value = "2m", value_parser = timeout)]
    pub max_connection_age: Duration,
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
        /// Stop as soon as this process is no longer the parent (the service died).
        #[arg(long)]
        parent: Option<u32>,
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
        /// Where the primary is.
        target: RedisTarget,
        /// Key holding the counter.
        key: String,
        /// Replicas that must have each batch before it is answered (0: none), and how long to
        /// wait for them.
        wait: (u32, Duration),
    },
}

/// How the service finds the Redis primary.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One server (may contain a password, so it is never logged).
    Url(Secret),
    /// Whichever server the Sentinels name as the primary of `master`.
    Sentinel {
        /// HOST:PORT of each Sentinel.
        sentinels: Vec<String>,
        /// The monitored primary's name.
        master: String,
        /// Password of the data servers, if they require one.
        password: Option<Secret>,
    },
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners, logging, timeouts and limits, as parsed.
    pub options: Options,
    /// Counter store.
    pub store: StoreConfig,
    /// Name of this instance, sent in `X-Instance`.
    pub instance: String,
    /// Active fault modes.
    pub faults: Faults,
    /// Admin password.
    pub password: Password,
}

/// A combination of flags that cannot work together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(String);

impl Cli {
    /// Checks what depends on several flags and builds the [`Config`]. `password` comes from
    /// [`crate::secret::load_password`].
    pub fn validate(self, password: Password) -> Result<Config, ConfigError> {
        let options = self.options;
        if options.bind == options.management_bind && options.bind.port() != 0 {
            return Err(ConfigError(format!(
                "--management-bind/MANAGEMENT_BIND must differ from --bind/BIND ({}): probes need a listener of their own",
                options.bind
            )));
        }
        let store = match self.store {
            StoreKind::Memory => StoreConfig::Memory,
            StoreKind::Redis => {
                let url = self.redis_url.filter(|u| !u.trim().is_empty());
                let target = match (url, self.redis_sentinels.is_empty()) {
                    (Some(_), false) => {
                        return Err(ConfigError(
                            "--redis-url/REDIS_URL and --redis-sentinels/REDIS_SENTINELS name the server two ways: keep one".into(),
                        ));
                    }
                    (None, true) => {
                        return Err(ConfigError(
                            "--store redis needs --redis-url/REDIS_URL (e.g. redis://127.0.0.1:6379/0) or --redis-sentinels/REDIS_SENTINELS (e.g. redis-ha:26379)".into(),
                        ));
                    }
                    (None, false) => RedisTarget::Sentinel {
                        sentinels: self.redis_sentinels,
                        master: self.redis_sentinel_master,
                        password: self
                            .redis_password
                            .filter(|p| !p.is_empty())
                            .map(Secret::new),
                    },
                    (Some(url), true) => {
                        if !["redis://", "rediss://", "unix://"]
                            .iter()
                            .any(|s| url.starts_with(s))
                        {
                            // The URL may embed a password: show only its scheme part.
                            return Err(ConfigError(format!(
                                "invalid value {:?} for --redis-url/REDIS_URL: a URL starting with redis://, rediss:// or unix://",
                                url.split("://").next().unwrap_or_default()
                            )));
                        }
                        if self.redis_password.is_some_and(|p| !p.is_empty()) {
                            return Err(ConfigError(
                                "--redis-password/REDIS_PASSWORD is for --redis-sentinels; with --redis-url put the password in the URL (redis://:PASSWORD@host:6379/0)".into(),
                            ));
                        }
                        RedisTarget::Url(Secret::new(url))
                    }
                };
                StoreConfig::Redis {
                    target,
                    key: self.redis_key,
                    wait: (self.redis_wait_replicas, self.redis_wait_timeout),
                }
            }
        };
        Ok(Config {
            options,
            store,
            instance: self.instance.unwrap_or_else(default_instance),
            faults: Faults::from_specs(self.faults),
            password,
        })
    }
}

/// `HOST:PORT` of a Sentinel.
fn host_port(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    match raw.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains(['/', '@', ' '])
                && port.parse::<u16>().is_ok_and(|p| p != 0) =>
        {
            Ok(raw.to_owned())
        }
        _ => Err("HOST:PORT, such as redis-ha:26379 or 127.0.0.1:26379".into()),
    }
}

/// A duration up to a day, such as `500ms`, `5s` or `1m` (a bare number is seconds).
fn any_duration(raw: &str) -> Result<Duration, String> {
    duration::parse(raw).ok_or_else(|| "a duration up to 24h such as 500ms, 5s or 1m".into())
}

/// A sampling period: at least 10ms.
fn interval(raw: &str) -> Result<Duration, String> {
    at_least(raw, Duration::from_millis(10))
}

/// A timeout: at least 100ms.
fn timeout(raw: &str) -> Result<Duration, String> {
    at_least(raw, Duration::from_millis(100))
}

/// How long to wait for replicas: 10ms to 500ms (within the Redis connection's own response
/// timeout, so the answer to `WAIT` is never cut off by it).
fn wait_timeout(raw: &str) -> Result<Duration, String> {
    let parsed = interval(raw)?;
    if parsed > Duration::from_millis(500) {
        return Err("a duration from 10ms to 500ms".into());
    }
    Ok(parsed)
}

fn at_least(raw: &str, min: Duration) -> Result<Duration, String> {
    let parsed = any_duration(raw)?;
    if parsed < min {
        return Err(format!(
            "a duration of at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(parsed)
}

/// A fault mode, with what is accepted when it is not one.
fn fault(raw: &str) -> Result<FaultSpec, String> {
    raw.trim().parse()
}

/// Instance names go into a response header, so they must be visible ASCII.
fn instance_name(name: &str) -> Result<String, String> {
    if !name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(name.to_string())
    } else {
        Err("up to 253 visible ASCII characters (no spaces)".into())
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["metrics-app"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    fn validate(args: &[&str]) -> Result<Config, ConfigError> {
        parse(args)
            .unwrap()
            .validate(Password::fixed(Secret::new("pw".into())))
    }

    /// The message clap gives for `args`, which must be refused.
    fn refused(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_a_memory_store_on_port_8080_and_the_access_log_off() {
        let config = validate(&["--instance", "a"]).unwrap();
        assert_eq!(config.options.bind.port(), 8080);
        assert_eq!(config.options.management_bind.port(), 9090);
        assert!(matches!(config.store, StoreConfig::Memory));
        assert_eq!(config.options.drain_delay, Duration::from_secs(5));
        assert_eq!(config.options.shutdown_timeout, Duration::from_secs(10));
        assert!(!config.options.access_log);
        assert!(config.faults.is_empty());
        assert!(validate(&["--access-log"]).unwrap().options.access_log);
    }

    #[test]
    fn a_bad_value_names_the_flag_the_value_and_the_accepted_form() {
        for (args, needles) in [
            (
                &["--drain-delay", "soon"][..],
                &["--drain-delay", "soon", "500ms"][..],
            ),
            (
                &["--header-read-timeout", "5ms"],
                &["header-read-timeout", "5ms", "100ms"],
            ),
            (
                &["--collect-interval", "1ms"],
                &["collect-interval", "10ms"],
            ),
            (&["--bind", "localhost"], &["--bind", "localhost"]),
            (&["--max-connections", "0"], &["max-connections", "0"]),
            (&["--max-connections", "many"], &["max-connections", "many"]),
            (
                &["--instance", "bad name"],
                &["--instance", "visible ASCII"],
            ),
            (&["--fault", "explode"], &["--fault", "slow-even", "leak"]),
            (&["--redis-key", ""], &["--redis-key"]),
            (
                &["--redis-wait-timeout", "2s"],
                &["--redis-wait-timeout", "500ms"],
            ),
            (
                &["--redis-wait-replicas", "99"],
                &["--redis-wait-replicas", "99"],
            ),
        ] {
            let msg = refused(args);
            for needle in needles {
                assert!(msg.contains(needle), "{args:?}: {needle:?} not in {msg}");
            }
        }
    }

    #[test]
    fn the_management_listener_needs_its_own_address() {
        let err = validate(&[
            "--bind",
            "127.0.0.1:9000",
            "--management-bind",
            "127.0.0.1:9000",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("--management-bind"), "{err}");
        // Port 0 twice is two different ephemeral ports (tests).
        assert!(validate(&["--bind", "127.0.0.1:0", "--management-bind", "127.0.0.1:0"]).is_ok());
    }

    #[test]
    fn sentinels_or_a_url_but_not_both() {
        let ok = validate(&[
            "--store",
            "redis",
            "--redis-sentinels",
            "127.0.0.1:26379, redis-ha:26380",
            "--redis-password",
            "pw",
        ])
        .unwrap();
        let StoreConfig::Redis {
            target:
                RedisTarget::Sentinel {
                    sentinels,
                    master,
                    password,
                },
            ..
        } = ok.store
        else {
            panic!("expected the sentinel target, got {:?}", ok.store);
        };
        assert_eq!(sentinels, ["127.0.0.1:26379", "redis-ha:26380"]);
        assert_eq!(master, "mymaster");
        assert_eq!(
            password.map(|p| p.expose().to_owned()).as_deref(),
            Some("pw")
        );

        let both = validate(&[
            "--store",
            "redis",
            "--redis-sentinels",
            "a:1",
            "--redis-url",
            "redis://x:1/0",
        ])
        .unwrap_err();
        assert!(both.to_string().contains("two ways"), "{both}");
        let password_with_url = validate(&[
            "--store",
            "redis",
            "--redis-url",
            "redis://x:1/0",
            "--redis-password",
            "pw",
        ])
        .unwrap_err();
        assert!(
            password_with_url.to_string().contains("in the URL"),
            "{password_with_url}"
        );
        for bad in ["nohost", ":26379", "h:0", "h:99999", "user@h:1"] {
            let err = refused(&["--redis-sentinels", bad]);
            assert!(err.contains("HOST:PORT"), "{bad}: {err}");
        }
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
    fn fault_modes_combine() {
        let config = validate(&["--fault", "slow-even=2s,leak=3"]).unwrap();
        assert_eq!(config.faults.slow_even, Some(Duration::from_secs(2)));
        assert_eq!(config.faults.leak_mb, Some(3));
        assert_eq!(
            validate(&["--instance", "pod-1"]).unwrap().instance,
            "pod-1"
        );
    }
}
