//! The flags of `appctl diagnose` and their validation into a checked [`Config`]: the rest of
//! the command only sees the checked form (ripgrep's split of raw flags and configuration).

use std::path::PathBuf;
use std::time::Duration;

use super::collect::http;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people at a terminal.
    Text,
    /// Stable JSON (docs/diagnose.md).
    Json,
    /// A root-cause write-up for a ticket.
    Markdown,
}

/// Flags of `appctl diagnose`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiagnoseArgs {
    /// URL to probe, e.g. http://metrics-app.localtest.me/counter
    // The doc comment is the --help text, where a plain URL reads best.
    #[allow(rustdoc::bare_urls)]
    pub url: String,
    /// Most requests to send (the probe stops earlier once the verdict is certain).
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
    /// Requests in flight at once; 1 keeps request order (and counter values) meaningful.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Per-request timeout; a request slower than this is recorded as a timeout (evidence).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Time limit for the whole probe.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
    /// Pause between requests (e.g. 500ms to watch a crash and the restart that follows).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Send every request even when the verdict is already certain.
    #[arg(long)]
    pub no_early_stop: bool,
    /// PID of the target process on this host (default: the process listening on the URL's
    /// port, when the URL points at this host).
    #[arg(long)]
    pub pid: Option<i32>,
    /// Do not look for a local process.
    #[arg(long, conflicts_with = "pid")]
    pub no_process: bool,
    /// Prometheus metrics URL to scrape before and after the probe.
    #[arg(long, value_name = "URL")]
    pub metrics: Option<String>,
    /// Read the pods behind the target from Kubernetes (current kubeconfig).
    #[arg(long)]
    pub kube: bool,
    /// Namespace of the pods, with --kube (default: found from the route serving the URL's
    /// hostname, else `metrics-app`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Label selector of the pods, with --kube (default: the selector of the Service behind
    /// the route serving the URL's hostname, else `app.kubernetes.io/name=metrics-app`).
    #[arg(long)]
    pub selector: Option<String>,
    /// A health endpoint to check next to the target all through the probe (repeatable), e.g.
    /// http://127.0.0.1:9090/healthz. Without it, a hang and the ramp ask the target host's
    /// /healthz.
    #[arg(long = "probe", value_name = "URL")]
    pub probes: Vec<String>,
    /// The saturation ramp (`--ramp`, `--ramp-max`, `--ramp-step`).
    #[command(flatten)]
    pub ramp: Box<RampArgs>,
    /// The history from Prometheus (`--prometheus`, `--since`, `--prom-match`).
    #[command(flatten)]
    pub history: Box<HistoryArgs>,
    /// Response header naming the answering instance.
    #[arg(long, default_value = "x-instance")]
    pub instance_header: String,
    /// Report format on standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also write the report to this file: FILE.svg draws the evidence (latency by request,
    /// memory, the ramp), FILE.html the drawing and the text report, FILE.json the JSON report,
    /// anything else Markdown.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Flags of the saturation ramp (boxed in [`DiagnoseArgs`] to keep the command enum small).
#[derive(Debug, Clone, clap::Args)]
pub struct RampArgs {
    /// After the probe, step concurrency up (1, 4, 16, 64, 256, 1024 connections, each step
    /// --ramp-step long) and name where throughput stops growing, and why.
    #[arg(long = "ramp")]
    pub enabled: bool,
    /// With --ramp: most connections (the last step).
    #[arg(long = "ramp-max", default_value_t = 1024, value_name = "N")]
    pub max: usize,
    /// With --ramp: how long each step lasts.
    #[arg(long = "ramp-step", default_value = "2s", value_parser = humantime::parse_duration)]
    pub step: Duration,
}

/// Flags of the history mode.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Prometheus base URL: also read what it recorded about the target (memory, restarts,
    /// 5xx ratio, latency quantiles, kube-state-metrics) over --since.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// With --prometheus: how far back to look.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    /// With --prometheus: label matchers selecting the target's series.
    #[arg(long, default_value = "job=\"metrics-app\"", value_name = "MATCHERS")]
    pub prom_match: String,
}

/// Usage errors, each naming the flag and what is accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    /// The URL does not parse or is not http.
    #[error("URL {0:?}: expected an absolute http:// URL, e.g. http://127.0.0.1:8080/counter")]
    Url(String),
    /// A numeric flag out of range.
    #[error("--{flag} {value}: expected {accepted}")]
    Range {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        accepted: &'static str,
    },
}

/// Checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The probe.
    pub plan: http::Plan,
    /// Port of the target when it is on this host (for finding its process).
    pub local_port: Option<u16>,
    /// Hostname of the target (for finding its pods from the route).
    pub host: String,
    /// `host:port` of the target, for connection checks.
    pub authority: String,
    /// Health endpoints: `--probe` URLs, else the target host's /healthz.
    pub health_urls: Vec<String>,
    /// Connections of each ramp step, with `--ramp`.
    pub ramp_steps: Option<Vec<usize>>,
    /// The flags.
    pub args: DiagnoseArgs,
}

/// Validates flags into a [`Config`].
pub fn validate(args: DiagnoseArgs) -> Result<Config, UsageError> {
    let url = reqwest::Url::parse(&args.url).map_err(|_| UsageError::Url(args.url.clone()))?;
    if url.scheme() != "http" || url.host_str().is_none() {
        return Err(UsageError::Url(args.url.clone()));
    }
    let range = |flag, value: String, ok: bool, accepted| {
        if ok {
            Ok(())
        } else {
            Err(UsageError::Range {
                flag,
                value,
                accepted,
            })
        }
    };
    range(
        "requests",
        args.requests.to_string(),
        (1..=100_000).contains(&args.requests),
        "1..=100000",
    )?;
    range(
        "concurrency",
        args.concurrency.to_string(),
        (1..=256).contains(&args.concurrency),
        "1..=256",
    )?;
    range(
        "timeout",
        humantime::format_duration(args.timeout).to_string(),
        args.timeout >= Duration::from_millis(10) && args.timeout <= Duration::from_secs(600),
        "10ms..=10m",
    )?;
    range(
        "max-time",
        humantime::format_duration(args.max_time).to_string(),
        args.max_time >= Duration::from_secs(1) && args.max_time <= Duration::from_secs(3600),
        "1s..=1h",
    )?;
    range(
        "interval",
        humantime::format_duration(args.interval).to_string(),
        args.interval <= Duration::from_secs(60),
        "0s..=1m",
    )?;
    let local = matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    ) || url.host_str().is_some_and(|h| h.ends_with(".localhost"));
    let local_port = if local {
        url.port_or_known_default()
    } else {
        None
    };
    range(
        "ramp-max",
        args.ramp.max.to_string(),
        (1..=1024).contains(&args.ramp.max),
        "1..=1024",
    )?;
    range(
        "ramp-step",
        humantime::format_duration(args.ramp.step).to_string(),
        args.ramp.step >= Duration::from_millis(200) && args.ramp.step <= Duration::from_secs(30),
        "200ms..=30s",
    )?;
    let ramp_steps = args.ramp.enabled.then(|| {
        let mut steps: Vec<usize> = [1, 4, 16, 64, 256, 1024]
            .into_iter()
            .filter(|&c| c <= args.ramp.max)
            .collect();
        if steps.last() != Some(&args.ramp.max) {
            steps.push(args.ramp.max);
        }
        steps
    });
    range(
        "since",
        humantime::format_duration(args.history.since).to_string(),
        args.history.since >= Duration::from_secs(60)
            && args.history.since <= Duration::from_secs(7 * 86400),
        "1m..=7d",
    )?;
    if let Some(p) = &args.history.prometheus {
        match reqwest::Url::parse(p) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {}
            _ => return Err(UsageError::Url(p.clone())),
        }
    }
    for p in &args.probes {
        match reqwest::Url::parse(p) {
            Ok(u) if u.scheme() == "http" && u.host_str().is_some() => {}
            _ => return Err(UsageError::Url(p.clone())),
        }
    }
    let health_urls = if args.probes.is_empty() {
        let mut u = url.clone();
        u.set_path("/healthz");
        u.set_query(None);
        vec![u.to_string()]
    } else {
        args.probes.clone()
    };
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    Ok(Config {
        ramp_steps,
        authority,
        health_urls,
        plan: http::Plan {
            url: args.url.clone(),
            requests: args.requests,
            concurrency: args.concurrency,
            timeout: args.timeout,
            max_time: args.max_time,
            instance_header: args.instance_header.clone(),
            interval: args.interval,
        },
        local_port,
        host: url.host_str().unwrap_or_default().to_string(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DiagnoseArgs,
    }

    fn parse(argv: &[&str]) -> Result<Config, UsageError> {
        let cli = Cli::try_parse_from(std::iter::once("diagnose").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{e}"));
        validate(cli.args)
    }

    #[test]
    fn flags_are_checked_with_clear_messages() {
        let c = parse(&["http://127.0.0.1:8080/counter"]).expect("valid");
        assert_eq!(c.local_port, Some(8080));
        assert_eq!(c.plan.concurrency, 1);
        let remote = parse(&["http://metrics-app.localtest.me/counter"]).expect("valid");
        assert_eq!(remote.local_port, None);
        let e = parse(&["ftp://x/"]).expect_err("scheme");
        assert!(e.to_string().contains("http://"));
        let e = parse(&["http://x/", "--requests", "0"]).expect_err("range");
        assert_eq!(e.to_string(), "--requests 0: expected 1..=100000");
        let e = parse(&["http://x/", "--timeout", "1ms"]).expect_err("range");
        assert!(e.to_string().starts_with("--timeout 1ms"));
        let e = parse(&["http://x/", "--ramp", "--ramp-max", "5000"]).expect_err("range");
        assert_eq!(e.to_string(), "--ramp-max 5000: expected 1..=1024");
        let c = parse(&["http://x/", "--ramp", "--ramp-max", "100"]).expect("valid");
        assert_eq!(c.ramp_steps, Some(vec![1, 4, 16, 64, 100]));
        let c = parse(&["http://x/", "--ramp"]).expect("valid");
        assert_eq!(c.ramp_steps, Some(vec![1, 4, 16, 64, 256, 1024]));
        let e = parse(&["http://x/", "--probe", "ftp://x/"]).expect_err("probe url");
        assert!(e.to_string().contains("ftp://x/"));
    }
}
