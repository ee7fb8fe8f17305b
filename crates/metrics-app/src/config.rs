//! Command-line and environment configuration.
//!
//! clap parses and type-checks every flag (durations, addresses, numbers, fault modes) into
//! [`Cli`], naming the flag, the bad value and what is accepted, with exit code 2; then
//! [`Cli::validate`] checks what depends on several flags at once and returns the [`Config`]
//! the rest of the service sees.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::duration;
use crate::faults::Faults;
use crate::secret::Password;

/// The /counter service: a shared counter over HTTP with health probes and Prometheus metrics.
///
/// The admin password comes from the PASSWORD environment variable or from --password-file /
/// PASSWORD_FILE; setting both is an error. Every flag has an environment variable fallback;
/// flags win.
#[derive(Debug, Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("METRICS_APP_GIT_COMMIT"), ")"))]
pub struct Cli {
    /// How the service listens, logs and stops.
    #[command(flatten)]
    pub options: Options,

    /// Where the counter lives: `memory` (this process only) or `redis` (shared by all replicas).
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::Memory)]
    pub(crate) store: StoreKind,

    /// Redis URL, required with `--store redis` (e.g. redis://127.0.0.1:6379/0).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// Redis Sentinels (comma-separated HOST:PORT, e.g. redis-ha:26379) that name the primary,
    /// instead of a fixed `--redis-url`; after a failover the service follows the new primary.
    #[arg(long, env = "REDIS_SENTINELS", value_delimiter = ',', value_parser = host_port)]
    pub(crate) redis_sentinels: Vec<String>,

    /// The primary's name as the Sentinels know it (`sentinel monitor NAME ...`).
    #[arg(long, env = "REDIS_SENTINEL_MASTER", default_value = "mymaster", value_parser = NonEmptyStringValueParser::new())]
    pub(crate) redis_sentinel_master: String,

    /// Password of the Redis servers found through `--redis-sentinels` (with `--redis-url`, put
    /// it in the URL). The Sentinels themselves are asked without one.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub(crate) redis_password: Option<String>,

    /// Redis key holding the counter.
    #[arg(long, env = "REDIS_KEY", default_value = "metrics-app:counter", value_parser = NonEmptyStringValueParser::new())]
    pub(crate) redis_key: String,

    /// After each batch of increments, wait until this many replicas have it before answering
    /// (Redis `WAIT`), so a replica promoted after a failover never hands out a value twice.
    /// 0 turns it off; it needs that many replicas attached, or `/counter` answers 503.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    pub(crate) redis_wait_replicas: u32,

    /// How long `--redis-wait-replicas` waits for the replicas before the batch fails with 503.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT", default_value = "100ms", value_parser = duration_in(Duration::from_millis(10)..=Duration::from_millis(500)))]
    pub(crate) redis_wait_timeout: Duration,

    /// Instance name for the X-Instance header and logs [default: $POD_NAME, else the host name].
    #[arg(long, env = "INSTANCE", value_parser = instance_name)]
    pub(crate) instance: Option<String>,

    /// Fault mode reproducing a historical bug (repeatable): `slow-even[=DURATION]`, `leak[=MB]`.
    /// Off by default; never switchable at run time.
    #[arg(long = "fault", env = "FAULTS", value_delimiter = ',', value_parser = |raw: &str| raw.trim().parse::<Faults>())]
    pub(crate) faults: Vec<Faults>,

    /// File holding the admin password (a mounted Secret), re-read when it changes; a trailing
    /// newline is trimmed.
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

    /// After SIGTERM/SIGINT/SIGQUIT, keep serving this long while /readyz answers 503 (e.g. 5s).
    #[arg(long, env = "DRAIN_DELAY", default_value = "5s", value_parser = duration_in(Duration::ZERO..=duration::MAX))]
    pub drain_delay: Duration,

    /// Then stop accepting and give requests in flight this long to finish.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration_in(Duration::ZERO..=duration::MAX))]
    pub shutdown_timeout: Duration,

    /// Time a client has to send a complete request head; slower (or idle) connections are
    /// closed (at least 100ms).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration_in(Duration::from_millis(100)..=duration::MAX))]
    pub header_read_timeout: Duration,

    /// Time a client has to send a whole request body, however it trickles in; a slower upload
    /// gets 408 (at least 100ms).
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration_in(Duration::from_millis(100)..=duration::MAX))]
    pub body_read_timeout: Duration,

    /// Connections the public listener serves at once; beyond them a new connection gets a fast
    /// 503 and is closed, instead of waiting in a queue.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// A keep-alive connection is closed after its current response once it is this old, so
    /// clients reconnect and spread over replicas that were added since (at least 100ms).
    #[arg(long, env = "MAX_CONNECTION_AGE", default_value = "2m", value_parser = duration_in(Duration::from_millis(100)..=duration::MAX))]
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
pub(crate) enum StoreKind {
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
pub(crate) enum StoreConfig {
    /// The in-process counter.
    Memory,
    /// The shared Redis counter.
    Redis {
        /// Where the primary is.
        target: RedisTarget,
        /// The key holding the counter.
        key: String,
        /// Replicas that must have each batch before it is answered (0: none), and for how long.
        wait: (u32, Duration),
    },
}

/// How the service finds the Redis primary.
#[derive(Debug, Clone)]
pub(crate) enum RedisTarget {
    /// One server; the URL may contain a password.
    Url(SecretString),
    /// Whichever server the Sentinels name as the primary of `master`.
    Sentinel {
        /// `HOST:PORT` of each Sentinel.
        sentinels: Vec<String>,
        /// The monitored primary's name.
        master: String,
        /// The data servers' password, if they require one.
        password: Option<SecretString>,
    },
}

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners, logging, timeouts and limits, as parsed.
    pub options: Options,
    /// The counter store.
    pub(crate) store: StoreConfig,
    /// Name of this instance, sent in `X-Instance`.
    pub(crate) instance: String,
    /// Active fault modes.
    pub(crate) faults: Faults,
    /// The admin password.
    pub(crate) password: Password,
}

/// A combination of flags that cannot work together.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Cli {
    /// Checks what depends on several flags and builds the [`Config`]. `password` comes from
    /// [`crate::secret::load_password`].
    pub fn validate(self, password: Password) -> Result<Config, ConfigError> {
        let fail = |message: &str| Err(ConfigError(message.to_string()));
        let options = self.options;
        if options.bind == options.management_bind && options.bind.port() != 0 {
            return fail(&format!(
                "--management-bind/MANAGEMENT_BIND must differ from --bind/BIND ({}): probes need a listener of their own",
                options.bind
            ));
        }
        let url = self.redis_url.filter(|u| !u.trim().is_empty());
        let redis_password = self.redis_password.filter(|p| !p.is_empty());
        let redis = |target| StoreConfig::Redis {
            target,
            key: self.redis_key,
            wait: (self.redis_wait_replicas, self.redis_wait_timeout),
        };
        let store = match (self.store, url, self.redis_sentinels.is_empty()) {
            (StoreKind::Memory, ..) => StoreConfig::Memory,
            (_, Some(_), false) => {
                return fail(
                    "--redis-url/REDIS_URL and --redis-sentinels/REDIS_SENTINELS name the server two ways: keep one",
                );
            }
            (_, None, true) => {
                return fail(
                    "--store redis needs --redis-url/REDIS_URL (e.g. redis://127.0.0.1:6379/0) or --redis-sentinels/REDIS_SENTINELS (e.g. redis-ha:26379)",
                );
            }
            (_, None, false) => redis(RedisTarget::Sentinel {
                sentinels: self.redis_sentinels,
                master: self.redis_sentinel_master,
                password: redis_password.map(SecretString::from),
            }),
            (_, Some(url), true) => {
                // The URL may embed a password: show only its scheme.
                let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
                if !["redis", "rediss", "unix"].contains(&scheme) {
                    return fail(&format!(
                        "invalid scheme {scheme} in --redis-url/REDIS_URL: a URL starting with redis://, rediss:// or unix://"
                    ));
                }
                if redis_password.is_some() {
                    return fail(
                        "--redis-password/REDIS_PASSWORD is for --redis-sentinels; with --redis-url put the password in the URL (redis://:PASSWORD@host:6379/0)",
                    );
                }
                redis(RedisTarget::Url(url.into()))
            }
        };
        Ok(Config {
            options,
            store,
            instance: self.instance.unwrap_or_else(default_instance),
            faults: Faults::combine(self.faults),
            password,
        })
    }
}

/// `HOST:PORT` of a Sentinel.
fn host_port(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let (host, port) = raw.rsplit_once(':').unwrap_or_default();
    if host.is_empty()
        || host.contains(['/', '@', ' '])
        || !port.parse::<u16>().is_ok_and(|p| p != 0)
    {
        return Err("HOST:PORT, such as redis-ha:26379 or 127.0.0.1:26379".into());
    }
    Ok(raw.to_owned())
}

/// A duration in `range`, written like `500ms`, `5s` or `1m` (a bare number is seconds).
fn duration_in(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |raw: &str| {
        duration::parse(raw)
            .filter(|d| range.contains(d))
            .ok_or_else(|| {
                let show = |d: &Duration| match *d {
                    duration::MAX => "24h".to_string(),
                    d => humantime::format_duration(d).to_string(),
                };
                let (min, max) = (show(range.start()), show(range.end()));
                format!("a duration from {min} to {max}, written like 500ms, 5s or 1m")
            })
    }
}

/// Instance names go into a response header, so they must be visible ASCII.
fn instance_name(name: &str) -> Result<String, String> {
    (!name.is_empty() && name.len() <= 253 && name.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| name.to_string())
        .ok_or_else(|| "up to 253 visible ASCII characters (no spaces)".into())
}

/// `POD_NAME` (set by the chart through the downward API), else the host name.
fn default_instance() -> String {
    [
        std::env::var("POD_NAME").ok(),
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
    ]
    .into_iter()
    .flatten()
    .find_map(|s| instance_name(s.trim()).ok())
    .unwrap_or_else(|| "metrics-app".to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["metrics-app"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    fn validate(args: &[&str]) -> Result<Config, ConfigError> {
        parse(args).unwrap().validate(Password::fixed("pw".into()))
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
            password.as_ref().map(ExposeSecret::expose_secret),
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
        for url in ["http://user:hunter2@x", "user:hunter2@x"] {
            let err = validate(&["--store", "redis", "--redis-url", url]).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
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
