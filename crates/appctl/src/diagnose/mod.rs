//! `appctl diagnose URL`: find out from the outside why an app misbehaves, and say so.
//!
//! Evidence comes from four places — the HTTP behaviour ([`probe`]), the local process when
//! the target runs on this host ([`process`]), the Prometheus metrics ([`metrics`]) and the
//! Kubernetes pods behind it ([`kube`]) — and is judged by pure analyses ([`latency`],
//! [`errors`], [`counter`], put together by [`analysis`]) into ranked findings
//! ([`model`]) rendered by [`report`].
//!
//! Exit codes: 0 healthy, 1 findings, 2 usage error or target unreachable.

pub mod analysis;
pub mod counter;
pub mod errors;
pub mod kube;
pub mod kube_more;
pub mod latency;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod process;
pub mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use model::{Finding, Sample};
use report::{MetricsEvidence, ProbeInfo, Report, Verdict};

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
    /// Response header naming the answering instance.
    #[arg(long, default_value = "x-instance")]
    pub instance_header: String,
    /// Report format on standard output.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also write the Markdown root-cause report to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
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
    pub plan: probe::Plan,
    /// Port of the target when it is on this host (for finding its process).
    pub local_port: Option<u16>,
    /// Hostname of the target (for finding its pods from the route).
    pub host: String,
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
    Ok(Config {
        plan: probe::Plan {
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

/// Runs a diagnosis and prints the report; the exit code is 0 healthy, 1 findings, 2 usage or
/// unreachable target.
pub async fn run(args: DiagnoseArgs) -> ExitCode {
    let config = match validate(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("appctl diagnose: {e}");
            return ExitCode::from(2);
        }
    };
    let report = diagnose(&config).await;
    let out = match config.args.output {
        OutputFormat::Text => report.to_text(),
        OutputFormat::Json => report.to_json(),
        OutputFormat::Markdown => report.to_markdown(),
    };
    println!("{out}");
    if let Some(path) = &config.args.report
        && let Err(e) = std::fs::write(path, report.to_markdown())
    {
        eprintln!("appctl diagnose: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    match report.verdict {
        Verdict::Healthy => ExitCode::SUCCESS,
        Verdict::Findings => ExitCode::from(1),
        Verdict::Unreachable => ExitCode::from(2),
    }
}

/// Collects all evidence and builds the report.
pub async fn diagnose(config: &Config) -> Report {
    let mut notes = Vec::new();
    let sequential = config.plan.concurrency == 1;
    let timeout_ms = config.plan.timeout.as_secs_f64() * 1000.0;

    // Process: found before the probe so children started during it can be told apart.
    let pid = if config.args.no_process {
        None
    } else {
        match (config.args.pid, config.local_port) {
            (Some(pid), _) => Some(pid),
            (None, Some(port)) => {
                let found = process::read::pid_listening_on(port);
                if found.is_none() {
                    notes.push(format!(
                        "process evidence: no process of this host visible as listening on port \
                         {port} (behind a proxy or container, pass --pid)"
                    ));
                }
                found
            }
            (None, None) => {
                notes.push("process evidence: the target is not on this host".into());
                None
            }
        }
    };
    let before = pid.and_then(process::read::snapshot);
    if let (Some(pid), None) = (pid, &before) {
        notes.push(format!("process evidence: cannot read process {pid}"));
    }

    let metrics_before = match &config.args.metrics {
        Some(url) => scrape(url, config.plan.timeout, &mut notes, "before").await,
        None => None,
    };

    let started = Instant::now();
    let mut new_children: BTreeMap<i32, process::Child> = BTreeMap::new();
    let mut named_at: BTreeMap<&'static str, usize> = BTreeMap::new();
    let early = !config.args.no_early_stop;
    let samples = probe::run(&config.plan, |samples: &[Sample]| {
        if let Some(b) = &before
            && let Some(now) = process::read::snapshot(b.pid)
        {
            for (cpid, child) in now.children {
                if !b.children.contains_key(&cpid) {
                    new_children.insert(cpid, child);
                }
            }
        }
        let n = samples.len();
        if n > 100 && n % 25 != 0 {
            return false;
        }
        let so_far = analysis::analyze(samples, sequential, timeout_ms);
        for f in &so_far.findings {
            named_at.entry(f.kind.as_str()).or_insert(n);
        }
        early && so_far.certain
    })
    .await;
    let elapsed = started.elapsed();
    let samples = match samples {
        Ok(s) => s,
        Err(e) => {
            notes.push(e.to_string());
            Vec::new()
        }
    };
    let http = analysis::analyze(&samples, sequential, timeout_ms);
    let mut findings = http.findings;
    for f in &mut findings {
        f.named_at_request = named_at.get(f.kind.as_str()).copied();
    }

    let process_evidence = before.map(|b| {
        let after = process::read::snapshot(b.pid);
        // Children that exited between readings still count; keep their last reading.
        if let Some(a) = &after {
            for (cpid, child) in &a.children {
                if !b.children.contains_key(cpid) {
                    new_children.insert(*cpid, child.clone());
                }
            }
        }
        process::ProcessEvidence {
            before: b,
            after,
            new_children: new_children.into_values().collect(),
            elapsed_seconds: elapsed.as_secs_f64(),
            requests: samples.len(),
        }
    });
    if let Some(e) = &process_evidence {
        merge(&mut findings, process::findings(e));
    }

    let metrics_evidence = match &config.args.metrics {
        Some(url) => {
            let after = scrape(url, config.plan.timeout, &mut notes, "after").await;
            if let Some(b) = &metrics_before {
                merge(
                    &mut findings,
                    metrics::findings(b, after.as_ref(), samples.len()),
                );
            }
            Some(MetricsEvidence {
                url: url.clone(),
                before: metrics_before,
                after,
            })
        }
        None => None,
    };

    let kube_evidence = if config.args.kube {
        let target = kube::Target {
            namespace: config.args.namespace.clone(),
            selector: config.args.selector.clone(),
            host: config.host.clone(),
        };
        match kube::collect(&target).await {
            Ok(k) => {
                if k.pods.is_empty() {
                    notes.push(format!(
                        "kubernetes evidence: no pods match {:?} in namespace {}",
                        k.selector, k.namespace
                    ));
                }
                notes.extend(k.notes.iter().map(|n| format!("kubernetes evidence: {n}")));
                merge(&mut findings, kube::findings(&k.pods, &k.events));
                merge(
                    &mut findings,
                    kube_more::near_limit(&k.memory).into_iter().collect(),
                );
                for (pod, ps) in &k.processes {
                    merge(
                        &mut findings,
                        kube_more::busy_processes(pod, ps).into_iter().collect(),
                    );
                }
                Some(k)
            }
            Err(e) => {
                notes.push(format!("kubernetes evidence unavailable: {e}"));
                None
            }
        }
    } else {
        None
    };

    let mut outcomes = BTreeMap::new();
    for s in &samples {
        *outcomes.entry(s.outcome.label()).or_insert(0) += 1;
    }
    let answered = samples
        .iter()
        .any(|s| matches!(s.outcome, model::Outcome::Status { .. }));
    let verdict = if !answered {
        Verdict::Unreachable
    } else if findings.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Findings
    };
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        target: config.plan.url.clone(),
        verdict,
        probe: ProbeInfo {
            requests_planned: config.plan.requests,
            requests_sent: samples.len(),
            concurrency: config.plan.concurrency,
            timeout_ms: config.plan.timeout.as_millis() as u64,
            stopped_early: samples.len() < config.plan.requests && elapsed < config.plan.max_time,
            elapsed_ms: elapsed.as_millis() as u64,
        },
        latency: http.summary,
        slow_threshold_ms: http.slow_threshold_ms,
        outcomes,
        instances: http.instances,
        process: process_evidence,
        metrics: metrics_evidence,
        kube: kube_evidence,
        notes,
        findings,
        samples,
    };
    report.rank();
    report
}

/// Adds `new` findings; one of a kind already present lends its evidence to the existing one
/// (the same memory growth seen by the process and by the metrics is one finding).
fn merge(findings: &mut Vec<Finding>, new: Vec<Finding>) {
    for f in new {
        match findings.iter_mut().find(|e| e.kind == f.kind) {
            Some(existing) => existing.evidence.extend(f.evidence),
            None => findings.push(f),
        }
    }
}

/// Scrapes and parses `url`; failures become notes.
async fn scrape(
    url: &str,
    timeout: Duration,
    notes: &mut Vec<String>,
    when: &str,
) -> Option<metrics::Reading> {
    let client = crate::http()
        .timeout(timeout.max(Duration::from_secs(2)))
        .no_proxy()
        .build()
        .ok()?;
    let text = match client.get(url).send().await {
        Ok(r) => match r.text().await {
            Ok(t) => t,
            Err(e) => {
                notes.push(format!("metrics {when} the probe: {e}"));
                return None;
            }
        },
        Err(e) => {
            notes.push(format!(
                "metrics {when} the probe: {url} did not answer: {e}"
            ));
            return None;
        }
    };
    match metrics::parse(&text) {
        Ok(r) => Some(r),
        Err(e) => {
            notes.push(format!("metrics {when} the probe: {e}"));
            None
        }
    }
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
    }
}
